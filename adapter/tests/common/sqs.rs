//! The SQS source tests' harness (`tests/sqs_source.rs` includes it by path): queues made per
//! test with their DLQ, the adapter hosting `sqs_fixture`, a cuttable proxy to SQS, bounded waits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(45);

/// LocalStack's (or any SQS's) endpoint, from `AWS_ENDPOINT_URL` as the adapter reads it.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// An AWS configuration for that endpoint with LocalStack's region and credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// An SQS client for the tests' own calls.
pub async fn client() -> Client {
    Client::new(&sdk_config().await)
}

/// Builds `sqs_fixture` once per test binary (the adapter's tests cannot depend on another
/// package's binaries) and returns its path, next to the adapter's.
pub fn sqs_fixture() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "test-functions",
                "--bin",
                "sqs_fixture",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building sqs_fixture failed");
        let adapter = PathBuf::from(env!("CARGO_BIN_EXE_adapter"));
        let path = adapter.with_file_name("sqs_fixture");
        assert!(path.exists(), "no {}", path.display());
        path
    })
}

/// A queue with a dead-letter queue, both new and uniquely named.
pub struct Queues {
    pub client: Client,
    pub url: String,
    pub dlq_url: String,
}

impl Queues {
    pub async fn new(test: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        Self::create(test, visibility_timeout, max_receive_count, false).await
    }

    /// FIFO queues (content-based deduplication): send with [`Queues::send_in_group`].
    pub async fn fifo(test: &str, visibility_timeout: u32, max_receive_count: u32) -> Self {
        Self::create(test, visibility_timeout, max_receive_count, true).await
    }

    async fn create(
        test: &str,
        visibility_timeout: u32,
        max_receive_count: u32,
        fifo: bool,
    ) -> Self {
        let client = client().await;
        let name = format!(
            "sqs-src-{test}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let suffix = if fifo { ".fifo" } else { "" };
        let fifo_attributes =
            |create: aws_sdk_sqs::operation::create_queue::builders::CreateQueueFluentBuilder| {
                if fifo {
                    create
                        .attributes(QueueAttributeName::FifoQueue, "true")
                        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
                } else {
                    create
                }
            };
        let dlq_url = fifo_attributes(client.create_queue())
            .queue_name(format!("{name}-dlq{suffix}"))
            .send()
            .await
            .expect("LocalStack answers (run scripts/localstack up)")
            .queue_url
            .expect("a queue url");
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("dlq arn");
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()});
        let url = fifo_attributes(client.create_queue())
            .queue_name(format!("{name}{suffix}"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("a queue url");
        Self {
            client,
            url,
            dlq_url,
        }
    }

    /// Sends each body; returns the message ids in order.
    pub async fn send(&self, bodies: &[serde_json::Value]) -> Vec<String> {
        let mut ids = Vec::new();
        for body in bodies {
            let sent = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(body.to_string())
                .send()
                .await
                .expect("send");
            ids.push(sent.message_id.expect("a message id"));
        }
        ids
    }

    /// Sends each body to a FIFO queue in message group `group`; returns the message ids in order.
    pub async fn send_in_group(&self, bodies: &[serde_json::Value], group: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for body in bodies {
            let sent = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(body.to_string())
                .message_group_id(group)
                .send()
                .await
                .expect("send");
            ids.push(sent.message_id.expect("a message id"));
        }
        ids
    }

    /// (visible, in flight) messages on the main queue; LocalStack's counts are exact.
    pub async fn depth(&self) -> (u64, u64) {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// One receive of up to 10 visible messages: (message id, receive count).
    pub async fn receive(
        &self,
        url: &str,
        wait_seconds: i32,
        visibility: i32,
    ) -> Vec<(String, u32)> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                (m.message_id.unwrap_or_default(), count)
            })
            .collect()
    }
}

/// A running `adapter sqs -- sqs_fixture`, its function logging to `log`.
pub struct Adapter {
    pub child: Child,
    pub admin: String,
    pub log: PathBuf,
    pub output: PathBuf,
}

impl Adapter {
    pub async fn start(queue_url: &str, args: &[&str]) -> Self {
        Self::start_via(&endpoint(), queue_url, args).await
    }

    /// Starts the adapter with `endpoint` as its `AWS_ENDPOINT_URL`.
    pub async fn start_via(endpoint: &str, queue_url: &str, args: &[&str]) -> Self {
        let fixture = sqs_fixture();
        let admin = free_address();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log = std::env::temp_dir().join(format!("sqs-fixture-{id}.log"));
        let output = std::env::temp_dir().join(format!("sqs-adapter-{id}.out"));
        std::fs::write(&log, "").expect("log file");
        let out = std::fs::File::create(&output).expect("output file");
        let err = out.try_clone().expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_adapter"))
            .arg("sqs")
            .args([
                "--queue-url",
                queue_url,
                "--admin-listen",
                &admin,
                "--shutdown-grace",
                "3",
            ])
            .args(args)
            .arg("--")
            .arg(fixture)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env(
                "RUST_LOG",
                std::env::var("SQS_TEST_RUST_LOG").unwrap_or_else(|_| "adapter=debug,info".into()),
            )
            .env("SQS_FIXTURE_LOG", &log)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, as under a terminal: `signal_group` then reaches the adapter
            // and its function processes together, as Ctrl-C does.
            .process_group(0)
            .spawn()
            .expect("adapter starts");
        Self {
            child,
            admin,
            log,
            output,
        }
    }

    /// The function's log lines.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many times each message was processed: `record <id> <receive count>` lines.
    pub fn records(&self) -> BTreeMap<String, Vec<u32>> {
        let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for line in self.lines() {
            let mut parts = line.split(' ');
            if parts.next() == Some("record")
                && let (Some(id), Some(count)) = (parts.next(), parts.next())
            {
                seen.entry(id.to_owned())
                    .or_default()
                    .push(count.parse().unwrap_or(0));
            }
        }
        seen
    }

    /// `GET path` on the admin listener: the status code and the body.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(&self.admin).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// A Prometheus sample from the admin listener's `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The status of `/readyz`.
    pub async fn readiness(&self) -> Option<u16> {
        self.get("/readyz").await.map(|(status, _)| status)
    }

    pub fn sigterm(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// Sends `signal` to the adapter's whole process group (its function processes included).
    pub fn signal_group(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([signal, "--", &format!("-{pid}")])
                .status();
        }
    }

    pub async fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status.expect("wait for the adapter"),
            Err(_) => panic!(
                "the adapter did not exit within {bound:?}; output: {}",
                self.output_text()
            ),
        }
    }

    pub fn output_text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL, so the adapter stops its function processes too.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.sigterm();
        }
        // Kept when the test failed: they are what explains it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(&self.output);
        }
    }
}

/// A TCP proxy to LocalStack that can be cut: a real network outage for one adapter, without
/// stopping the LocalStack other tests share.
pub struct Proxy {
    pub url: String,
    pub up: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Self {
        let target = endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut down = state.subscribe();
                if !*down.borrow() {
                    continue; // dropped: the connection is reset
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { url, up, task }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address with a port free a moment ago.
pub fn free_address() -> String {
    format!("127.0.0.1:{}", test_support::free_port())
}

/// Polls `check` until it yields a value, for at most `bound`.
pub async fn wait_for<T, F, Fut>(what: &str, bound: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most invocations ever running at once, from `start`/`end` lines in file order.
pub fn max_overlap(lines: &[String]) -> i64 {
    let mut running = 0i64;
    let mut max = 0;
    for line in lines {
        if line.starts_with("start ") {
            running += 1;
            max = max.max(running);
        } else if line.starts_with("end ") {
            running -= 1;
        }
    }
    max
}
