//! `observe`: starts a command (an adapter), times it to ready, watches its memory and, for the
//! worker drain, waits until it has deleted a number of messages; then stops it with SIGTERM.
//!
//! ```text
//! observe --admin 127.0.0.1:PORT [--count N] [--stop-file PATH] [--timeout S] [--tag k=v]... \
//!         --log FILE -- adapter sqs ... -- sleep
//! ```
//!
//! Prints, each with the `--tag`s:
//! - `bench startup ready_ms=...`: spawn to the first `200` from `/readyz`;
//! - `bench memory phase=idle process=NAME rss_kb=... hwm_kb=...` for the adapter and each child,
//!   `--idle-seconds` after ready (`phase=early` with `--count`: the drain is under way by then);
//! - with `--count N`: `bench drain wall_s=... deleted=...` when the admin `/metrics` counter
//!   `adapter_sqs_messages_deleted_total` reaches N (wall time from spawn); with `--timeline FILE`, every
//!   change of that counter it saw, as `SECONDS DELETED` lines (seconds from spawn), for the drain
//!   plot (`bench/plots.py`): kept in memory during the drain and written after it;
//! - otherwise it holds until `--stop-file` exists (e.g. while a load test runs);
//! - `bench memory phase=peak ...`: `VmHWM` of every process just before the stop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bench::procfs;
use bench::stats::Line;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

/// Runs and observes one adapter.
#[derive(Parser, Debug)]
struct Args {
    /// The adapter's admin listener.
    #[arg(long)]
    admin: SocketAddr,
    /// Wait until this many messages are deleted (`adapter_sqs_messages_deleted_total`).
    #[arg(long)]
    count: Option<u64>,
    /// Without `--count`: hold until this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Seconds after ready before the idle memory sample.
    #[arg(long, default_value_t = 1.0)]
    idle_seconds: f64,
    /// Most seconds in all; the drain line says `complete=false` when it runs out.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// With `--count`: where to write the deleted count over time (`SECONDS DELETED` lines).
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// `key=value` added to every line.
    #[arg(long)]
    tag: Vec<String>,
    /// File for the command's stdout and stderr.
    #[arg(long)]
    log: PathBuf,
    /// The command to run.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Empty<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let tagged = |figure: &str| {
        args.tag.iter().fold(Line::new(figure), |line, tag| {
            let (k, v) = tag.split_once('=').unwrap_or((tag, ""));
            line.kv(k, v)
        })
    };
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let log = File::create(&args.log)?;
    let started = Instant::now();
    let deadline = Duration::from_secs(args.timeout);
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("the command exited at once")?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let admin = args.admin;

    let result = async {
        loop {
            if get(&client, &format!("http://{admin}/readyz"))
                .await
                .is_some_and(|(ok, _)| ok)
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the command exited before ready: {status}").into());
            }
            if started.elapsed() > deadline {
                return Err("not ready before the timeout".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ready = started.elapsed();
        tagged("startup")
            .f("ready_ms", ready.as_secs_f64() * 1000.0)
            .print();
        tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
        // With a drain under way this sample is not idle: it is the early phase of the work.
        let phase = if args.count.is_some() {
            "early"
        } else {
            "idle"
        };
        print_memory(&tagged, phase, pid);

        if let Some(count) = args.count {
            let mut deleted = 0;
            // Only the changes: a few thousand points at most, written after the drain.
            let mut timeline: Vec<(f64, u64)> = Vec::new();
            while started.elapsed() < deadline {
                deleted = deleted_total(&client, admin).await.unwrap_or(deleted);
                if timeline
                    .last()
                    .map_or(deleted > 0, |&(_, last)| deleted != last)
                {
                    timeline.push((started.elapsed().as_secs_f64(), deleted));
                }
                if deleted >= count {
                    break;
                }
                // The poll interval is the wall time's error (half of it on average): 10 ms is
                // under 1% of the shortest drain, and a scrape costs the adapter ~0.04 ms of CPU.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let wall = started.elapsed().as_secs_f64();
            tagged("drain")
                .f("wall_s", wall)
                .f("ready_s", ready.as_secs_f64())
                .kv("deleted", deleted)
                .kv("complete", deleted >= count)
                .print();
            if let Some(path) = &args.timeline {
                let text: String = timeline
                    .iter()
                    .map(|(t, d)| format!("{t:.3} {d}\n"))
                    .collect();
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("observe: could not write {}: {e}", path.display());
                }
            }
        } else if let Some(stop) = &args.stop_file {
            while !stop.exists() && started.elapsed() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        print_memory(&tagged, "peak", pid);
        Ok::<(), Error>(())
    }
    .await;

    stop(&mut child, pid).await;
    result
}

/// One `bench memory` line per process of the tree rooted at `pid`.
fn print_memory(tagged: &impl Fn(&str) -> Line, phase: &str, pid: u32) {
    for (i, m) in procfs::tree(pid).iter().enumerate() {
        let role = if i == 0 { "adapter" } else { "function" };
        tagged("memory")
            .kv("phase", phase)
            .kv("process", role)
            .kv("name", &m.name)
            .kv("pid", m.pid)
            .kv("rss_kb", m.rss_kb)
            .kv("hwm_kb", m.hwm_kb)
            .print();
    }
}

/// SIGTERM, up to 30 s to exit (the adapter drains), then SIGKILL.
async fn stop(child: &mut tokio::process::Child, pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// GET `url`: whether it answered 2xx, and the body; `None` when it did not answer in 2 s.
async fn get(client: &HttpClient, url: &str) -> Option<(bool, Bytes)> {
    let uri: hyper::Uri = url.parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let ok = response.status().is_success();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((ok, body))
}

/// `adapter_sqs_messages_deleted_total` from the admin `/metrics`.
async fn deleted_total(client: &HttpClient, admin: SocketAddr) -> Option<u64> {
    let (_, body) = get(client, &format!("http://{admin}/metrics")).await?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|line| line.strip_prefix("adapter_sqs_messages_deleted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}
