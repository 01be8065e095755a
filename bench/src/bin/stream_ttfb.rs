//! `stream-ttfb`: time to first byte and to the last of a streamed reply through `adapter http`.
//!
//! ```text
//! stream-ttfb --url http://127.0.0.1:PORT/ --target streamed --delay-ms 100 --count 50 --seconds 10
//! ```
//!
//! Each request asks the `streamer` test function for a first chunk, then `--delay-ms` of work,
//! then a second chunk. Requests are sequential (one in flight), after `--warmup` unmeasured
//! ones. Prints `bench stream target=... delay_ms=... count=... ttfb_p50_ms=... ttfb_p99_ms=...
//! total_p50_ms=... errors=...`.

use std::time::{Duration, Instant};

use bench::stats::{Line, Percentiles};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

/// Measures streamed replies.
#[derive(Parser, Debug)]
struct Args {
    /// `adapter http -- streamer` URL.
    #[arg(long)]
    url: String,
    /// The `target` of the result line (how the adapter is set up).
    #[arg(long)]
    target: String,
    /// The function's work between its first and second chunk.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
    /// Most measured requests.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// Most seconds of measuring.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured requests first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One request's times: to the first body byte, and to the end of the body.
struct Sample {
    first: Duration,
    total: Duration,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let plan = Bytes::from(
        json!({"chunks": ["first chunk\n", "second chunk\n"], "delay_ms": args.delay_ms})
            .to_string(),
    );
    let call = || async {
        let request = hyper::Request::post(&args.url)
            .header("content-type", "application/json")
            .body(Full::new(plan.clone()))?;
        let start = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| "no response head in 10 s")??;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()).into());
        }
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            if frame?.data_ref().is_some_and(|d| !d.is_empty()) && first.is_none() {
                first = Some(start.elapsed());
            }
        }
        let total = start.elapsed();
        Ok::<Sample, Error>(Sample {
            first: first.ok_or("an empty body")?,
            total,
        })
    };
    for _ in 0..args.warmup {
        call().await?;
    }
    let (mut firsts, mut totals, mut errors) = (Vec::new(), Vec::new(), 0_usize);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    while firsts.len() + errors < args.count && Instant::now() < deadline {
        match call().await {
            Ok(sample) => {
                firsts.push(sample.first);
                totals.push(sample.total);
            }
            Err(_) => errors += 1,
        }
    }
    let first = Percentiles::of(&mut firsts);
    let total = Percentiles::of(&mut totals);
    Line::new("stream")
        .kv("target", &args.target)
        .kv("delay_ms", args.delay_ms)
        .kv("count", first.count)
        .f("ttfb_p50_ms", first.p50_ms)
        .f("ttfb_p99_ms", first.p99_ms)
        .f("total_p50_ms", total.p50_ms)
        .kv("errors", errors)
        .print();
    Ok(())
}
