//! A burst of 1,000 tasks through the real API and worker (`adapter http -- enqueue`,
//! `adapter sqs -- sleep`, from `target/debug`) against LocalStack: every task accepted is run to
//! `task finished`; none is lost. In a file of its own, so that cargo runs it alone rather than
//! beside the fault tests.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use test_support::{TestQueue, endpoint, log_events, wait_for};

use common::{Api, Worker};

const TASKS: usize = 1_000;
const POSTERS: usize = 32;
/// Times one task is posted at most while the API answers 503 (retryable).
const ATTEMPTS: usize = 10;
/// Bound of the whole burst's posting, and of its running.
const POSTING: Duration = Duration::from_secs(120);
const RUNNING: Duration = Duration::from_secs(180);

/// What became of one task's posting.
#[derive(Debug)]
enum Posted {
    /// 202 with this task id, after `retries` 503s.
    Accepted { task_id: String, retries: usize },
    /// Anything else: a status and body, or a connection error.
    Refused(String),
}

async fn post_until_accepted(api: &Api) -> Posted {
    let mut retries = 0;
    loop {
        let response = match api.post_task(1.0).await {
            Ok(response) => response,
            Err(error) => return Posted::Refused(format!("connection: {error}")),
        };
        match response.status {
            202 => {
                let task_id = response.json()["task_id"].as_str().unwrap().to_string();
                return Posted::Accepted { task_id, retries };
            }
            503 if retries + 1 < ATTEMPTS => {
                // Retryable: back off as the API asks (capped, so the test stays bounded).
                retries += 1;
                let seconds = response
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(5);
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            status => return Posted::Refused(format!("{status}: {}", response.body)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_1000_tasks_is_run_to_the_last() {
    let queue = TestQueue::create("e2e-burst", 30, 5).await;
    let api = Arc::new(Api::start(&queue.url, &endpoint(), &["--max-concurrency", "8"]).await);
    let worker = Worker::start(
        "e2e-burst-worker",
        &queue.url,
        &endpoint(),
        &["--max-concurrency", "20", "--batch-size", "10"],
    )
    .await;

    // POSTERS clients share the TASKS posts between them.
    let next = Arc::new(AtomicUsize::new(0));
    let posters = (0..POSTERS).map(|_| {
        let (api, next) = (api.clone(), next.clone());
        tokio::spawn(async move {
            let mut posted = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < TASKS {
                posted.push(post_until_accepted(&api).await);
            }
            posted
        })
    });
    let posted: Vec<Posted> = tokio::time::timeout(POSTING, futures_join_all(posters.collect()))
        .await
        .expect("the burst is posted in time")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(posted.len(), TASKS);

    let mut accepted = HashSet::new();
    let mut refused = Vec::new();
    let mut retried = 0;
    for outcome in posted {
        match outcome {
            Posted::Accepted { task_id, retries } => {
                retried += usize::from(retries > 0);
                assert!(accepted.insert(task_id), "task ids are unique");
            }
            Posted::Refused(why) => refused.push(why),
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {TASKS} posts were refused (other than a retried 503): {:?}\n{}",
        refused.len(),
        &refused[..refused.len().min(10)],
        api.service.log.display()
    );
    assert_eq!(accepted.len(), TASKS);
    eprintln!("{TASKS} tasks accepted; {retried} after one or more 503s");

    // Every accepted task runs to the end (at least once).
    let deadline = tokio::time::Instant::now() + RUNNING;
    let runs = loop {
        let mut runs: BTreeMap<String, usize> = BTreeMap::new();
        for event in log_events(&worker.service.output(), "task finished") {
            if let Some(task_id) = event["task_id"].as_str() {
                *runs.entry(task_id.to_string()).or_default() += 1;
            }
        }
        let missing = accepted.iter().filter(|id| !runs.contains_key(*id)).count();
        if missing == 0 {
            break runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {TASKS} accepted tasks never finished (waited {RUNNING:?}); see {}",
            worker.service.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let unknown: Vec<_> = runs.keys().filter(|id| !accepted.contains(*id)).collect();
    assert!(unknown.is_empty(), "tasks nobody posted ran: {unknown:?}");
    let again = runs.values().filter(|&&n| n > 1).count();
    eprintln!("{again} tasks ran more than once (at-least-once delivery)");

    // Nothing is left behind: every message deleted, none dead-lettered.
    wait_for("the queue to be empty", common::WAIT, || async {
        (queue.count(&queue.url).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        queue.count(&queue.dlq_url).await,
        0,
        "nothing dead-lettered"
    );
    drop((api, worker));
    queue.delete().await;
}

/// Awaits every task, in order; a panicking poster fails the test.
async fn futures_join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a poster panicked"));
    }
    out
}
