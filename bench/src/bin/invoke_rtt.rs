//! `invoke-rtt`: round trip of one invocation at a time through the adapter's Invoke API, or of a
//! direct in-process call of the same handler (the baseline).
//!
//! ```text
//! invoke-rtt --url http://127.0.0.1:PORT/2015-03-31/functions/echo/invocations --count 2000 --seconds 10
//! invoke-rtt --in-process --count 20000 --seconds 5
//! ```
//!
//! Invocations are sequential (one in flight), after `--warmup` unmeasured ones. Prints
//! `bench invoke target=... count=... p50_ms=... p99_ms=... errors=...`.

use std::time::{Duration, Instant};

use bench::stats::{Line, Percentiles};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// Measures invocation round trips.
#[derive(Parser, Debug)]
struct Args {
    /// Invoke API URL of the function; required unless `--in-process`.
    #[arg(long)]
    url: Option<String>,
    /// Call the handler in this process instead.
    #[arg(long)]
    in_process: bool,
    /// Most measured invocations.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Most seconds of measuring.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured invocations first.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// The `target` of the result line for `--url` (what serves the Invoke API).
    #[arg(long, default_value = "invoke-api")]
    target: String,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let deadline = Duration::from_secs(args.seconds);
    let (target, mut samples, errors) = if args.in_process {
        let (samples, errors) = in_process(&args, deadline).await?;
        ("in-process", samples, errors)
    } else {
        let url = args
            .url
            .clone()
            .ok_or("--url is required without --in-process")?;
        let (samples, errors) = invoke_api(&url, &args, deadline).await?;
        (args.target.as_str(), samples, errors)
    };
    let p = Percentiles::of(&mut samples);
    Line::new("invoke")
        .kv("target", target)
        .kv("count", p.count)
        .f("p50_ms", p.p50_ms)
        .f("p99_ms", p.p99_ms)
        .f("max_ms", p.max_ms)
        .kv("errors", errors)
        .print();
    Ok(())
}

async fn in_process(args: &Args, deadline: Duration) -> Result<(Vec<Duration>, usize), Error> {
    let mut samples = Vec::with_capacity(args.count);
    let mut errors = 0;
    for _ in 0..args.warmup {
        let _ = bench::echo::echo(bench::echo::sample_request()?).await;
    }
    let start = Instant::now();
    while samples.len() < args.count && start.elapsed() < deadline {
        let request = bench::echo::sample_request()?;
        let t = Instant::now();
        let result = bench::echo::echo(request).await;
        samples.push(t.elapsed());
        if result.is_err() {
            errors += 1;
        }
    }
    Ok((samples, errors))
}

async fn invoke_api(
    url: &str,
    args: &Args,
    deadline: Duration,
) -> Result<(Vec<Duration>, usize), Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let event = Bytes::from(event().to_string());
    let call = || async {
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(event.clone()))?;
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| "invocation timed out after 10 s")??;
        let ok = response.status().is_success()
            && !response.headers().contains_key("x-amz-function-error");
        let _ = response.into_body().collect().await?;
        Ok::<bool, Error>(ok)
    };
    for _ in 0..args.warmup {
        call().await?;
    }
    let mut samples = Vec::with_capacity(args.count);
    let mut errors = 0;
    let start = Instant::now();
    while samples.len() < args.count && start.elapsed() < deadline {
        let t = Instant::now();
        let ok = call().await.unwrap_or(false);
        samples.push(t.elapsed());
        if !ok {
            errors += 1;
        }
    }
    Ok((samples, errors))
}

/// A function URL (payload 2.0) event for `GET /echo`, what the in-process baseline builds too.
fn event() -> serde_json::Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/echo",
        "rawQueryString": "",
        "headers": {"host": "127.0.0.1", "user-agent": "bench"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "bench",
            "domainName": "127.0.0.1",
            "domainPrefix": "bench",
            "http": {
                "method": "GET",
                "path": "/echo",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench"
            },
            "requestId": "bench-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "27/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795773600000_u64
        },
        "isBase64Encoded": false
    })
}
