//! The SQS source tests' harness (`tests/sqs_source/main.rs` and `tests/sqs_startup.rs` include it
//! by path): queues made per test with their DLQ, and the adapter hosting `sqs_fixture`. The
//! cuttable proxy to SQS and the bounded waits come from `test_support`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use test_support::endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(45);

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
        let prefix = format!("sqs-src-{test}");
        let queue = if fifo {
            test_support::TestQueue::create_fifo(&prefix, visibility_timeout, max_receive_count)
                .await
        } else {
            test_support::TestQueue::create(&prefix, visibility_timeout, max_receive_count).await
        };
        Self {
            client: queue.client,
            url: queue.url,
            dlq_url: queue.dlq_url,
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

    /// Sends `body` with `trace_header` as its `AWSTraceHeader`; returns the message id.
    pub async fn send_traced(&self, body: &serde_json::Value, trace_header: &str) -> String {
        use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
        let header = MessageSystemAttributeValue::builder()
            .data_type("String")
            .string_value(trace_header)
            .build()
            .expect("a trace attribute");
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body.to_string())
            .message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, header)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("a message id")
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

    /// The trace id of each invocation, in order: `trace <request id> <trace id>` lines.
    pub fn traces(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|line| line.strip_prefix("trace "))
            .filter_map(|rest| rest.split_once(' ').map(|(_, trace)| trace.to_owned()))
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

/// A loopback address with a port free a moment ago.
pub fn free_address() -> String {
    format!("127.0.0.1:{}", test_support::free_port())
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
