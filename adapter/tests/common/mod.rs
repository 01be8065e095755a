//! Helpers for the adapter's integration tests: start the real `adapter` binary on free ports with
//! a real function binary, wait for conditions with bounded timeouts, stop it on drop.

#![allow(dead_code)] // Each test file uses a different subset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long any wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A workspace binary next to the adapter (`target/debug/echo`, ...).
pub fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_adapter")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing. The adapter's tests host the workspace's function binaries: build them \
         first with `cargo build --workspace --bins` (or `cargo build -p test-functions`).",
        path.display()
    );
    path
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], test_support::free_port()))
}

/// How to start an adapter.
pub struct Spawn {
    source: &'static str,
    function: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stall_stdout: bool,
}

impl Spawn {
    /// `adapter http ... -- <function>`.
    pub fn http(function: &'static str) -> Self {
        Self {
            source: "http",
            function,
            args: Vec::new(),
            env: Vec::new(),
            stall_stdout: false,
        }
    }

    /// Makes the adapter's standard output a pipe nobody reads (a log driver that stalls).
    pub fn stall_stdout(mut self) -> Self {
        self.stall_stdout = true;
        self
    }

    /// Adds flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Adds an environment variable (the function inherits it).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the adapter.
    pub fn start(self) -> Adapter {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "adapter-{}-{}.log",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let log_file = std::fs::File::create(&log).expect("log file");
        let err_file = log_file.try_clone().expect("log file");
        let (stdout, stalled): (Stdio, _) = if self.stall_stdout {
            let (reader, writer) = std::io::pipe().expect("pipe");
            (writer.into(), Some(reader))
        } else {
            (log_file.into(), None)
        };
        let (http, admin, invoke) = (free_port(), free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_adapter"))
            .arg(self.source)
            .args(["--listen", &http.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--invoke-listen", &invoke.to_string()])
            .args(&self.args)
            .arg("--")
            .arg(binary(self.function))
            .envs(self.env)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err_file)
            .spawn()
            .expect("adapter starts");
        Adapter {
            child,
            http,
            admin,
            invoke,
            log,
            _stalled: stalled,
        }
    }
}

/// A running adapter; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Adapter {
    child: Child,
    /// The HTTP source.
    pub http: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The Invoke API.
    pub invoke: SocketAddr,
    log: PathBuf,
    /// The unread end of a stalled standard output, held open.
    _stalled: Option<std::io::PipeReader>,
}

impl Adapter {
    /// Everything the adapter and its function wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.admin);
        let deadline = Instant::now() + WAIT;
        loop {
            if get(&url).await.is_ok_and(|reply| reply.status == 200) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("adapter exited ({status}) before ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "adapter not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM sent");
    }

    /// Waits for the adapter to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "adapter did not exit in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://<http source><path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The Invoke API URL for `function`.
    pub fn invoke_url(&self, function: &str) -> String {
        format!(
            "http://{}/2015-03-31/functions/{function}/invocations",
            self.invoke
        )
    }

    /// Invokes the function through the Invoke API (RequestResponse).
    pub async fn invoke(&self, function: &str, payload: &Value) -> Reply {
        let request = http::Request::post(self.invoke_url(function))
            .body(Full::new(Bytes::from(payload.to_string())))
            .expect("request");
        send(request).await.expect("Invoke API answers")
    }

    /// The metrics, as `name{labels}` -> value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let reply = get(&format!("http://{}/metrics", self.admin))
            .await
            .expect("metrics answer");
        String::from_utf8_lossy(&reply.body)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect()
    }

    /// Waits until the metric `key` satisfies `condition`.
    pub async fn wait_metric(&self, key: &str, condition: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metrics().await.get(key).copied().unwrap_or_default();
            if condition(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "metric {key} stayed at {value}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first, so the adapter stops its function processes too.
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }
}

/// An HTTP reply, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the whole reply.
pub async fn send(request: http::Request<Full<Bytes>>) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// GET `url`.
pub async fn get(url: &str) -> Result<Reply, String> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    send(request).await
}

/// POST `body` to `url` as JSON.
pub async fn post_json(url: &str, body: &Value) -> Reply {
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    send(request).await.expect("answer")
}

/// Waits until `condition` holds for the adapter's log.
pub async fn wait_log(adapter: &Adapter, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !adapter.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "log never said {what:?}:\n{}",
            adapter.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
