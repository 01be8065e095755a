//! Helpers for integration tests that run against a real LocalStack.
//!
//! Every test makes its own queue (and DLQ) with a unique name, so tests run in parallel and
//! never see each other's messages. LocalStack must be answering at `AWS_ENDPOINT_URL` (default
//! `http://127.0.0.1:4566`); `scripts/test` starts it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

/// The LocalStack endpoint the tests use.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_string())
}

/// The environment a function process needs to reach LocalStack, for tests that start binaries.
pub fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
}

/// An SQS client for LocalStack, whatever the shell's AWS settings are.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "test-support",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// A queue made for one test, with a DLQ behind it.
#[derive(Debug, Clone)]
pub struct TestQueue {
    /// The client that made it.
    pub client: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub url: String,
    /// The DLQ's URL.
    pub dlq_url: String,
}

impl TestQueue {
    /// Makes `<prefix>-<uuid>` and `<prefix>-<uuid>-dlq`, with the given visibility timeout and
    /// `maxReceiveCount`. Panics (failing the test) with a hint when LocalStack is not answering.
    pub async fn create(prefix: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        let client = sqs_client().await;
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let dlq_url = create(&client, &format!("{name}-dlq"), HashMap::new()).await;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes on the DLQ")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("the DLQ has an ARN");
        let attributes = HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.to_string(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                format!(
                    r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#
                ),
            ),
        ]);
        let url = create(&client, &name, attributes).await;
        Self {
            client,
            url,
            dlq_url,
        }
    }

    /// Sends one message body; returns its message id.
    pub async fn send(&self, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage")
            .message_id
            .expect("a message id")
    }

    /// Receives up to `max` messages (1..=10) from `url`, waiting up to `wait_seconds` for the
    /// first, with every system attribute. The messages stay in flight until deleted.
    pub async fn receive(&self, url: &str, max: i32, wait_seconds: i32) -> Vec<Message> {
        self.client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default()
    }

    /// Visible + in flight + delayed messages on `url`, as SQS counts them.
    pub async fn count(&self, url: &str) -> u64 {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        attributes
            .values()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    }

    /// Deletes both queues. Tests call it at the end; a test that fails leaves them for a look.
    pub async fn delete(self) {
        for url in [&self.url, &self.dlq_url] {
            let _ = self.client.delete_queue().queue_url(url).send().await;
        }
    }
}

async fn create(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> String {
    client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create queue {name} on LocalStack at {} ({}); start it with `scripts/localstack up`",
                endpoint(),
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .queue_url
        .expect("CreateQueue returns a URL")
}

/// Polls `check` until it returns `Some`, for at most `timeout`; panics with `what` past it.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process in its own process group, stopped (the whole group) when dropped, with its
/// stdout and stderr captured to a file the test can search.
#[derive(Debug)]
pub struct Service {
    child: std::process::Child,
    /// Where its output goes.
    pub log: std::path::PathBuf,
}

impl Service {
    /// Starts `command` with its output to a fresh log file named after `name`.
    pub fn start(name: &str, mut command: std::process::Command) -> Self {
        use std::os::unix::process::CommandExt;
        let log =
            std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("a log file");
        let err = file.try_clone().expect("a log file handle");
        command
            .stdout(file)
            .stderr(err)
            .stdin(std::process::Stdio::null())
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self { child, log }
    }

    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, signal);
    }

    /// The process's id (also its process group's id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process alone, not to the rest of its group: what an orchestrator
    /// (`docker stop`, ECS, the OOM killer) does to a container's main process.
    pub fn signal_process(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Its exit status if it has exited, `None` while it runs.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("waitpid on a child")
    }

    /// Waits at most `timeout` for the process to exit; panics with its output past it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let what = format!("{} to exit", self.log.display());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; output:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The live child processes of the process (of any of its threads).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.child.id())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now, for a child process to bind.
///
/// Why not the kernel's pick (port 0): it comes from the ephemeral range, the same range every
/// outgoing connection and every `:0` listener (the adapter's own Runtime API) draws from. Between
/// this probe and the child's bind, another test's connection may take the port, and the child
/// fails with "Address already in use" (CI saw it). Below the ephemeral range only tests choose
/// ports, and within one test process they take turns, so each port is handed out once.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (first, end) = port_range_for_tests();
    let span = end - first;
    // Test processes that run side by side start at different places in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = first + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        // LocalStack's own ports: free while it is down, taken when it comes up.
        if (4_510..=4_566).contains(&port) {
            continue;
        }
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..{end}");
}

/// The ports [`free_port`] hands out, `first..end`: below the kernel's ephemeral range, or above
/// it when there is no room below.
fn port_range_for_tests() -> (u32, u32) {
    // How many ports tests use.
    const SPAN: u32 = 8_000;
    const LOWEST: u32 = 1_024;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((ends.next()??, ends.next()??))
        });
    // Linux's default when it can't be read.
    let (low, high) = range.unwrap_or((32_768, 60_999));
    if low >= LOWEST + SPAN / 4 {
        (low.saturating_sub(SPAN).max(LOWEST), low)
    } else if high + SPAN / 4 <= 65_536 {
        (high + 1, (high + 1 + SPAN).min(65_536))
    } else {
        panic!(
            "the ephemeral port range ({low}-{high}, /proc/sys/net/ipv4/ip_local_port_range) \
             leaves no ports for the tests to choose without racing the kernel"
        )
    }
}

/// A plain HTTP/1.1 exchange: `(status, body)`. Connection errors are `Err` so tests can wait for
/// a server to come up.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Result<(u16, String), String> {
    http_response(method, url, headers, body)
        .await
        .map(|response| (response.status, response.body))
}

/// The live (not zombie) processes whose parent is `pid`, read from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            proc_stat(child).is_some_and(|(state, parent)| parent == pid && state != 'Z')
        })
        .collect()
}

/// Whether `pid` is a running process (it exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The process's command name (`/proc/<pid>/comm`: the executable's file name, at most 15 bytes).
pub fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_string())
}

/// `(state, parent pid)` from `/proc/<pid>/stat`. The command name in parentheses may itself
/// hold spaces and parentheses, so the fields are read after its last `)`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// The path of a workspace binary in the debug target directory (`$CARGO_TARGET_DIR/debug` or
/// `<workspace>/target/debug`), for tests that start the real binaries as a user would. Panics
/// with how to build it when it is missing: `cargo test` builds only the package under test's
/// binaries, `scripts/test` runs `cargo build --workspace --bins` first.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`, \
         which `scripts/test` runs)",
        path.display()
    );
    path
}

/// The JSON log lines of `output` (tracing's JSON format, flattened or not) whose message is
/// `message`. Lines that are not JSON objects are skipped.
pub fn log_events(output: &str, message: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event.get("message").and_then(|m| m.as_str()) == Some(message)
                || event.pointer("/fields/message").and_then(|m| m.as_str()) == Some(message)
        })
        .collect()
}

/// An HTTP response: status, headers (names lower-case) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Every header, in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, as text (lossy).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// As [`http`], with the response's headers too.
pub async fn http_response(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Result<HttpResponse, String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A TCP proxy on loopback in front of LocalStack (or any address) that a test can cut, turn into
/// a black hole, and restore: a network outage for the processes pointed at it, without stopping
/// the LocalStack other tests share. It runs on the test's tokio runtime and stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    /// Forwards them.
    Up,
    /// Closes them.
    Cut,
    /// Swallows them: kept open, never answered.
    BlackHole,
    /// Dropped: closes everything.
    Stopped,
}

impl Proxy {
    /// A proxy to LocalStack's [`endpoint`].
    pub async fn to_localstack() -> Self {
        let endpoint = endpoint();
        let target = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self::start(target).await
    }

    /// A proxy to `target` (`host:port`), up.
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, _) = tokio::sync::watch::channel(ProxyMode::Up);
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (modes, swallowed) = (mode.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut mode = modes.subscribe();
                let held = swallowed.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let now = *mode.borrow_and_update();
                    let why = match now {
                        ProxyMode::Up => {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await
                            else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                changed = mode.wait_for(|m| *m != ProxyMode::Up) => {
                                    changed.map_or(ProxyMode::Stopped, |m| *m)
                                }
                            }
                            // `outbound` is dropped here: the target's side of it is gone.
                        }
                        other => other,
                    };
                    if why == ProxyMode::BlackHole {
                        // Open but silent until the proxy goes, as behind a lost NAT entry: the
                        // client's request is never answered, nor is the connection closed.
                        held.fetch_add(1, Ordering::SeqCst);
                        let _ = mode.wait_for(|m| *m == ProxyMode::Stopped).await;
                    }
                    drop(inbound); // cut: the client sees the connection closed
                });
            }
        });
        Self {
            addr,
            mode,
            held,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`: what `AWS_ENDPOINT_URL` should say.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's loopback address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `url` (an `http://host:port/...` URL, such as a LocalStack queue URL) with its host and
    /// port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        format!("{}{path}", self.url())
    }

    /// Cuts it: open connections are closed, new ones closed on arrival (clients see a reset or
    /// an end of stream, as when the far side goes away).
    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    /// Makes it a black hole: open connections and new ones are kept open but never answered,
    /// for as long as the proxy lives, even after [`Proxy::restore`] (the far side has forgotten
    /// them, as after a lost NAT entry or a dead load balancer). Only a client's own timeout gets
    /// it out of a call in flight.
    pub fn black_hole(&self) {
        self.mode.send_replace(ProxyMode::BlackHole);
    }

    /// How many connections the black hole has swallowed so far.
    pub fn swallowed(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Restores it: new connections reach the target again.
    pub fn restore(&self) {
        self.mode.send_replace(ProxyMode::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Closes every connection, swallowed ones included.
        self.mode.send_replace(ProxyMode::Stopped);
        self.task.abort();
    }
}
