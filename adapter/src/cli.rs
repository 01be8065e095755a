//! The command line. Every flag has an `ADAPTER_*` environment equivalent, for ECS task
//! definitions.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::sqs::SqsArgs;

/// Hosts an unmodified AWS Lambda function binary as a long-lived service.
#[derive(Parser, Debug)]
#[command(name = "adapter", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve HTTP: each request invokes the function with an API Gateway HTTP API (2.0) event.
    Http(HttpCommand),
    /// Consume an SQS queue: Lambda's SQS event source mapping, reproduced.
    Sqs(SqsCommand),
    /// Serve only Lambda's Invoke API, as the Runtime Interface Emulator does: one function,
    /// invoked by `aws lambda invoke`, an SDK or the LocalStack executor. Writes Lambda's
    /// `START`/`END`/`REPORT` lines around each invocation.
    Emulate(EmulateCommand),
    /// Exit 0 when a running adapter is ready (for container health checks).
    Healthcheck(HealthcheckArgs),
}

/// `adapter emulate [FLAGS] -- FUNCTION [ARGS...]`: `--invoke-listen` defaults to
/// [`EMULATE_INVOKE_LISTEN`].
#[derive(Args, Debug)]
pub struct EmulateCommand {
    /// Function host and service flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Where `adapter emulate` serves the Invoke API unless `--invoke-listen` says otherwise (9000 is
/// `cargo lambda watch`'s).
pub const EMULATE_INVOKE_LISTEN: &str = "127.0.0.1:9001";

/// `adapter http [FLAGS] -- FUNCTION [ARGS...]`.
#[derive(Args, Debug)]
pub struct HttpCommand {
    /// HTTP source flags.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Function host and service flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `adapter sqs [FLAGS] -- FUNCTION [ARGS...]`.
#[derive(Args, Debug)]
pub struct SqsCommand {
    /// SQS source flags.
    #[command(flatten)]
    pub sqs: SqsArgs,
    /// Function host and service flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Flags of the HTTP source.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address to serve HTTP on.
    #[arg(long, env = "ADAPTER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Larger request bodies get 413 (Lambda's limit: 6 MiB).
    #[arg(long, env = "ADAPTER_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Take `sourceIp` from the last `X-Forwarded-For` address: only behind a proxy that appends
    /// it (an ALB). Otherwise any client could name its own address; the peer's is used.
    #[arg(long, env = "ADAPTER_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Connections open at once; more wait in the listen backlog. Lowered to fit the open-file
    /// limit, leaving room for the admin listener and the Runtime API.
    #[arg(long, env = "ADAPTER_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a client has to send a whole request head, from its first byte; then the
    /// connection is closed.
    #[arg(long, env = "ADAPTER_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub header_read_timeout: u32,
    /// Seconds a client has to send a request's body, once its head has come; then 408.
    #[arg(long, env = "ADAPTER_BODY_READ_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub body_read_timeout: u32,
    /// Seconds a connection may wait for its next request before it is closed. Keep it above
    /// the load balancer's idle timeout (an ALB's is 60 s), so the balancer closes first.
    #[arg(long, env = "ADAPTER_IDLE_TIMEOUT", default_value_t = 75,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub idle_timeout: u32,
    /// How a streamed reply reaches the client, as a function URL's `InvokeMode`:
    /// `RESPONSE_STREAM` passes it on as the function writes it, `BUFFERED` answers once it is
    /// whole. Replies the function does not stream are buffered either way.
    #[arg(long, env = "ADAPTER_INVOKE_MODE", value_enum, default_value_t = InvokeMode::ResponseStream)]
    pub invoke_mode: InvokeMode,
}

/// A function URL's `InvokeMode`: whether a streamed reply is streamed to the client.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    /// Stream a streamed reply to the client as it is produced.
    #[value(name = "RESPONSE_STREAM")]
    ResponseStream,
    /// Answer once the reply is whole.
    #[value(name = "BUFFERED")]
    Buffered,
}

/// Flags shared by every source: the function host, the Invoke API, admin and shutdown.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// `AWS_LAMBDA_FUNCTION_NAME` (default: the binary's file name).
    #[arg(long, env = "ADAPTER_FUNCTION_NAME")]
    pub function_name: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB (informational: nothing enforces it).
    #[arg(long, env = "ADAPTER_MEMORY_SIZE", default_value_t = 128)]
    pub memory_size: u32,
    /// `AWS_LAMBDA_LOG_GROUP_NAME` (default: `/aws/lambda/<function name>`).
    #[arg(long, env = "ADAPTER_LOG_GROUP")]
    pub log_group: Option<String>,
    /// Region in the function ARN (default: `AWS_REGION`, else us-east-1).
    #[arg(long, env = "ADAPTER_REGION")]
    pub region: Option<String>,
    /// Account id in the function ARN and in HTTP events.
    #[arg(long, env = "ADAPTER_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// Invocations in flight at most.
    #[arg(long, env = "ADAPTER_MAX_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,
    /// Invocations one function process takes at once; `ceil(max / this)` processes run.
    #[arg(long, env = "ADAPTER_PER_PROCESS_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub per_process_concurrency: u32,
    /// Function timeout in seconds, as in Lambda (1 to 900).
    #[arg(long, env = "ADAPTER_TIMEOUT", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=900))]
    pub timeout: u32,
    /// Seconds a function process has to call `/next` after it starts.
    #[arg(long, env = "ADAPTER_INIT_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=900))]
    pub init_timeout: u32,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "ADAPTER_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Address of the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`); off
    /// unless given.
    #[arg(long, env = "ADAPTER_INVOKE_LISTEN")]
    pub invoke_listen: Option<SocketAddr>,
    /// Asynchronous (`Event`) invocations the Invoke API holds at most; more get 429.
    #[arg(long, env = "ADAPTER_MAX_QUEUED_EVENTS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_queued_events: u32,
    /// Seconds to let work in flight finish after SIGTERM (ECS waits 30 s before SIGKILL).
    #[arg(long, env = "ADAPTER_SHUTDOWN_GRACE", default_value_t = 25)]
    pub shutdown_grace: u32,
    /// Write Lambda's `START`, `END` and `REPORT` lines around every invocation (always on in
    /// `emulate`).
    #[arg(long, env = "ADAPTER_PLATFORM_LOGS")]
    pub platform_logs: bool,
    /// Shut down, as on SIGTERM, when standard input reaches its end: a supervisor that holds
    /// the other end of a pipe stops the adapter by dying, even by SIGKILL.
    #[arg(long, env = "ADAPTER_STOP_ON_STDIN_EOF")]
    pub stop_on_stdin_eof: bool,
    /// Serve the Runtime API to any local process. By default (on Linux) each connection must
    /// come from the function process or its descendants, traced through `/proc`: turn this on
    /// only where the adapter cannot read the function's `/proc` entries.
    #[arg(long, env = "ADAPTER_RUNTIME_API_OPEN")]
    pub runtime_api_open: bool,
    /// The function binary and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "FUNCTION")]
    pub function: Vec<OsString>,
}

impl ServiceArgs {
    /// The function binary.
    pub fn program(&self) -> PathBuf {
        self.function.first().map(PathBuf::from).unwrap_or_default()
    }

    /// The function name: the flag, or the binary's file name.
    pub fn resolved_function_name(&self) -> String {
        self.function_name.clone().unwrap_or_else(|| {
            self.program()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "function".to_owned())
        })
    }
}

/// Flags of `adapter healthcheck`.
#[derive(Args, Debug, Clone)]
pub struct HealthcheckArgs {
    /// Base URL of the adapter's admin listener. Default: `--admin-listen`'s address.
    #[arg(long, env = "ADAPTER_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// The admin listener's address, as the adapter was given it: a container's health check
    /// inherits the adapter's `ADAPTER_ADMIN_LISTEN`, so it asks that adapter, not another one on
    /// the same host network. An unspecified address (0.0.0.0) is asked on loopback.
    #[arg(long, env = "ADAPTER_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Seconds to wait for an answer.
    #[arg(long, env = "ADAPTER_HEALTHCHECK_TIMEOUT", default_value_t = 3)]
    pub timeout: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn http_takes_the_function_after_double_dash() {
        let cli = Cli::try_parse_from([
            "adapter",
            "http",
            "--max-concurrency",
            "8",
            "--",
            "/app/enqueue",
            "--flag",
        ])
        .expect("parses");
        let Command::Http(http) = cli.command else {
            panic!("expected http");
        };
        assert_eq!(http.service.max_concurrency, 8);
        assert_eq!(http.service.function, ["/app/enqueue", "--flag"]);
        assert_eq!(http.service.resolved_function_name(), "enqueue");
        assert_eq!(http.http.max_body_bytes, 6 * 1024 * 1024);
    }

    #[test]
    fn emulate_takes_service_flags() {
        let cli = Cli::try_parse_from([
            "adapter",
            "emulate",
            "--stop-on-stdin-eof",
            "--invoke-listen",
            "127.0.0.1:1234",
            "--",
            "./bootstrap",
        ])
        .expect("parses");
        let Command::Emulate(emulate) = cli.command else {
            panic!("expected emulate");
        };
        assert!(emulate.service.stop_on_stdin_eof);
        assert_eq!(
            emulate.service.invoke_listen,
            Some("127.0.0.1:1234".parse().expect("address"))
        );
        assert_eq!(emulate.service.resolved_function_name(), "bootstrap");
    }

    #[test]
    fn timeout_is_bounded_like_lambda() {
        let parse = |t: &str| {
            Cli::try_parse_from(["adapter", "http", "--timeout", t, "--", "f"]).map(|_| ())
        };
        assert!(parse("900").is_ok());
        assert!(parse("901").is_err());
        assert!(parse("0").is_err());
    }
}
