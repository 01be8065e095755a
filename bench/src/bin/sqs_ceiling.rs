//! `sqs-ceiling`: what the LocalStack queue does with no adapter and no function in front, through
//! the AWS SDK for Rust: the ceilings figures 2 and 3 compare against, and the queue plumbing
//! `scripts/bench` needs.
//!
//! ```text
//! sqs-ceiling create --name NAME                   print the URL of a new queue
//! sqs-ceiling delete --queue-url URL
//! sqs-ceiling send  --queue-url URL --concurrency C --count N --seconds T   raw SendMessage
//! sqs-ceiling fill  --queue-url URL --count N --duration-seconds 1          queue sleep tasks
//! sqs-ceiling drain --queue-url URL --count N --concurrency C --seconds T   Receive + DeleteBatch
//! ```
//!
//! Endpoint, region and credentials come from the SDK's environment (`AWS_ENDPOINT_URL`, ...).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use bench::stats::{Line, Percentiles};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Raw SQS throughput through the SDK.
#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a queue (visibility timeout 60 s) and print its URL.
    Create {
        /// Queue name.
        #[arg(long)]
        name: String,
    },
    /// Delete a queue.
    Delete {
        /// Queue URL.
        #[arg(long)]
        queue_url: String,
    },
    /// Raw `SendMessage` at a fixed concurrency: the enqueue ceiling.
    Send {
        /// Queue URL.
        #[arg(long)]
        queue_url: String,
        /// Calls in flight.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Most messages.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Most seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Queue `count` sleep tasks (`SendMessageBatch`, 10 a call).
    Fill {
        /// Queue URL.
        #[arg(long)]
        queue_url: String,
        /// Tasks to queue.
        #[arg(long)]
        count: usize,
        /// `duration_seconds` of each task.
        #[arg(long, default_value_t = 1.0)]
        duration_seconds: f64,
    },
    /// Raw `ReceiveMessage` (10 a call) + `DeleteMessageBatch` until `count` are deleted: the drain
    /// ceiling.
    Drain {
        /// Queue URL.
        #[arg(long)]
        queue_url: String,
        /// Messages to delete.
        #[arg(long)]
        count: usize,
        /// Receive loops in parallel.
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// Most seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let config = aws_config::load_from_env().await;
    let client = Client::new(&config);
    match args.command {
        Cmd::Create { name } => {
            let out = client
                .create_queue()
                .queue_name(name)
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                    "60",
                )
                .send()
                .await?;
            println!("{}", out.queue_url().ok_or("CreateQueue returned no URL")?);
        }
        Cmd::Delete { queue_url } => {
            client.delete_queue().queue_url(queue_url).send().await?;
        }
        Cmd::Send {
            queue_url,
            concurrency,
            count,
            seconds,
        } => send(client, queue_url, concurrency, count, seconds).await?,
        Cmd::Fill {
            queue_url,
            count,
            duration_seconds,
        } => fill(&client, &queue_url, count, duration_seconds).await?,
        Cmd::Drain {
            queue_url,
            count,
            concurrency,
            seconds,
        } => drain(client, queue_url, count, concurrency, seconds).await?,
    }
    Ok(())
}

/// A task message as `enqueue` writes it (the contract's queue message body).
fn task_body(duration_seconds: f64) -> String {
    json!({
        "version": 1,
        "task_id": uuid::Uuid::new_v4(),
        "kind": "sleep",
        "duration_seconds": duration_seconds,
        "enqueued_at": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
}

async fn send(
    client: Client,
    queue_url: String,
    concurrency: usize,
    count: usize,
    seconds: u64,
) -> Result<(), Error> {
    let issued = Arc::new(AtomicUsize::new(0));
    let deadline = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, queue_url, issued) = (client.clone(), queue_url.clone(), issued.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            while start.elapsed() < deadline && issued.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                let result = client
                    .send_message()
                    .queue_url(&queue_url)
                    .message_body(task_body(1.0))
                    .send()
                    .await;
                samples.push(t.elapsed());
                if result.is_err() {
                    errors += 1;
                }
            }
            (samples, errors)
        }));
    }
    let (mut samples, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (s, e) = worker.await?;
        samples.extend(s);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let p = Percentiles::of(&mut samples);
    Line::new("enqueue")
        .kv("target", "sdk-sendmessage")
        .kv("conns", concurrency)
        .f("rps", p.count as f64 / elapsed)
        .f("p50_ms", p.p50_ms)
        .f("p99_ms", p.p99_ms)
        .kv("requests", p.count)
        .kv("errors", errors)
        .f("seconds", elapsed)
        .print();
    Ok(())
}

async fn fill(
    client: &Client,
    queue_url: &str,
    count: usize,
    duration_seconds: f64,
) -> Result<(), Error> {
    let start = Instant::now();
    let batches: Vec<usize> = (0..count.div_ceil(10))
        .map(|i| (count - i * 10).min(10))
        .collect();
    let mut pending = futures_batches(client, queue_url, &batches, duration_seconds);
    let mut sent = 0;
    while let Some(result) = pending.pop() {
        sent += result.await??;
    }
    eprintln!(
        "queued {sent} tasks of {duration_seconds} s in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    if sent < count {
        return Err(format!("only {sent} of {count} tasks were queued").into());
    }
    Ok(())
}

/// Spawns the batch sends, 16 at a time at most (each batch waits on a semaphore permit).
fn futures_batches(
    client: &Client,
    queue_url: &str,
    batches: &[usize],
    duration_seconds: f64,
) -> Vec<tokio::task::JoinHandle<Result<usize, Error>>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    batches
        .iter()
        .map(|&size| {
            let (client, queue_url, permits) =
                (client.clone(), queue_url.to_owned(), permits.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await?;
                let entries = (0..size)
                    .map(|i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("m{i}"))
                            .message_body(task_body(duration_seconds))
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                Ok(out.successful().len())
            })
        })
        .collect()
}

async fn drain(
    client: Client,
    queue_url: String,
    count: usize,
    concurrency: usize,
    seconds: u64,
) -> Result<(), Error> {
    let deleted = Arc::new(AtomicUsize::new(0));
    // When the count was reached: pollers still in a long poll then do not count.
    let finished = Arc::new(std::sync::OnceLock::<Duration>::new());
    let deadline = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, queue_url, deleted) = (client.clone(), queue_url.clone(), deleted.clone());
        let finished = finished.clone();
        workers.push(tokio::spawn(async move {
            let mut errors = 0usize;
            while deleted.load(Ordering::Relaxed) < count && start.elapsed() < deadline {
                let Ok(out) = client
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                else {
                    errors += 1;
                    continue;
                };
                let entries = out
                    .messages()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(format!("d{i}"))
                            .receipt_handle(m.receipt_handle()?)
                            .build()
                            .ok()
                    })
                    .collect::<Vec<_>>();
                if entries.is_empty() {
                    continue;
                }
                match client
                    .delete_message_batch()
                    .queue_url(&queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        let n = out.successful().len();
                        if deleted.fetch_add(n, Ordering::Relaxed) + n >= count {
                            let _ = finished.set(start.elapsed());
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for worker in workers {
        errors += worker.await?;
    }
    let elapsed = finished
        .get()
        .copied()
        .unwrap_or_else(|| start.elapsed())
        .as_secs_f64();
    let done = deleted.load(Ordering::Relaxed);
    Line::new("drain_ceiling")
        .kv("tasks", count)
        .kv("pollers", concurrency)
        .kv("deleted", done)
        .f("wall_s", elapsed)
        .f("msgs_per_s", done as f64 / elapsed)
        .kv("errors", errors)
        .kv("complete", done >= count)
        .print();
    Ok(())
}
