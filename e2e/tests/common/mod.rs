//! What the end-to-end tests share: the API (`adapter http -- enqueue`) and the worker
//! (`adapter sqs -- sleep`) started from `target/debug` as a user starts them, and the worker's
//! log read as the operator reads it.

#![allow(dead_code)] // each test binary uses its own part of it

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use test_support::{
    HttpResponse, Service, free_port, http, http_response, is_alive, log_events, wait_for,
    workspace_binary,
};

/// The bound of the waits for something to happen (a process up, a task run, a message back).
pub const WAIT: Duration = Duration::from_secs(60);

/// The environment of an adapter (and so of its function processes): LocalStack's credentials
/// and region, `endpoint` as the AWS endpoint, `info` logs whatever the shell says.
fn adapter_command(endpoint: &str) -> Command {
    let mut command = Command::new(workspace_binary("adapter"));
    command
        .envs(test_support::aws_env())
        .env("AWS_ENDPOINT_URL", endpoint)
        // An SQS-specific endpoint would bypass `endpoint` (and the outage test's proxy).
        .env_remove("AWS_ENDPOINT_URL_SQS")
        .env("RUST_LOG", "info");
    command
}

/// `GET /readyz` on an admin listener: its status, `None` when nothing answers.
pub async fn readiness(admin: &str) -> Option<u16> {
    http("GET", &format!("http://{admin}/readyz"), &[], "")
        .await
        .ok()
        .map(|(status, _)| status)
}

/// Waits until `/readyz` at `admin` says 200; panics early, with the output, if `service` exits.
async fn wait_ready(service: &Service, admin: &str) {
    wait_for(
        &format!("{} to be ready", service.log.display()),
        WAIT,
        || async {
            assert!(
                is_alive(service.pid()),
                "the adapter exited while starting:\n{}",
                service.output()
            );
            (readiness(admin).await == Some(200)).then_some(())
        },
    )
    .await;
}

/// `adapter http -- enqueue`: the task API.
pub struct Api {
    /// The adapter (its function processes log to the same file).
    pub service: Service,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The admin listener's `host:port`.
    pub admin: String,
}

impl Api {
    /// Starts the API on fresh ports for `queue_url`, reaching SQS at `endpoint`, with `args`
    /// added to the adapter's flags; returns once it is ready.
    pub async fn start(queue_url: &str, endpoint: &str, args: &[&str]) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut command = adapter_command(endpoint);
        command
            .env("QUEUE_URL", queue_url)
            .args(["http", "--listen", &listen, "--admin-listen", &admin])
            .args(args)
            .arg("--")
            .arg(workspace_binary("enqueue"));
        let service = Service::start("e2e-api", command);
        wait_ready(&service, &admin).await;
        Self {
            service,
            base: format!("http://{listen}"),
            admin,
        }
    }

    /// `POST /tasks {"duration_seconds": <seconds>}`.
    pub async fn post_task(&self, seconds: f64) -> Result<HttpResponse, String> {
        self.post_task_with(seconds, &[]).await
    }

    /// `POST /tasks {"duration_seconds": <seconds>}` with `headers` added.
    pub async fn post_task_with(
        &self,
        seconds: f64,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, String> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        http_response(
            "POST",
            &format!("{}/tasks", self.base),
            &all,
            format!(r#"{{"duration_seconds": {seconds}}}"#),
        )
        .await
    }

    /// Posts a task that must be accepted; returns its `task_id`.
    pub async fn accepted_task(&self, seconds: f64) -> String {
        let response = self
            .post_task(seconds)
            .await
            .unwrap_or_else(|e| panic!("POST /tasks failed: {e}\n{}", self.service.output()));
        assert_eq!(
            response.status,
            202,
            "POST /tasks: {}\n{}",
            response.body,
            self.service.output()
        );
        response.json()["task_id"]
            .as_str()
            .expect("a task_id in the 202")
            .to_string()
    }
}

/// `adapter sqs -- sleep`: a worker.
pub struct Worker {
    /// The adapter (its function processes log to the same file).
    pub service: Service,
    /// The admin listener's `host:port`.
    pub admin: String,
}

impl Worker {
    /// Starts a worker on `queue_url`, reaching SQS at `endpoint`, with `args` added to the
    /// adapter's flags; returns once it is ready.
    pub async fn start(name: &str, queue_url: &str, endpoint: &str, args: &[&str]) -> Self {
        let admin = format!("127.0.0.1:{}", free_port());
        let mut command = adapter_command(endpoint);
        command
            .args(["sqs", "--queue-url", queue_url, "--admin-listen", &admin])
            .args(args)
            .arg("--")
            .arg(workspace_binary("sleep"));
        let service = Service::start(name, command);
        wait_ready(&service, &admin).await;
        Self { service, admin }
    }

    /// The status of its `/readyz`.
    pub async fn readiness(&self) -> Option<u16> {
        readiness(&self.admin).await
    }

    /// The log events `message` ("task started", "task finished") of task `task_id`.
    pub fn task_events(&self, message: &str, task_id: &str) -> Vec<Value> {
        task_events(&self.service.output(), message, task_id)
    }

    /// Waits for the first `message` event of task `task_id`.
    pub async fn wait_task_event(&self, message: &str, task_id: &str) -> Value {
        wait_for(
            &format!(
                "`{message}` of task {task_id} in {}",
                self.service.log.display()
            ),
            WAIT,
            || async { self.task_events(message, task_id).into_iter().next() },
        )
        .await
    }

    /// The live function processes (`sleep`) the adapter runs.
    pub fn function_processes(&self) -> Vec<u32> {
        self.service
            .children()
            .into_iter()
            .filter(|&pid| test_support::process_name(pid).as_deref() == Some("sleep"))
            .collect()
    }
}

/// The `message` events of task `task_id` in `output`.
pub fn task_events(output: &str, message: &str, task_id: &str) -> Vec<Value> {
    log_events(output, message)
        .into_iter()
        .filter(|event| event["task_id"] == task_id)
        .collect()
}

/// An event's `receive_count`.
pub fn receive_count(event: &Value) -> u64 {
    event["receive_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no receive_count in {event}"))
}
