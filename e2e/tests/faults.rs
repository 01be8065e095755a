//! The service through faults, end to end: the real `adapter`, `enqueue` and `sleep` binaries
//! (from `target/debug`) against a real LocalStack, killed, stopped and cut off as production
//! would do it. Nothing accepted may be lost (at-least-once): a task cut short runs again.
//!
//! Each test has its own queues and ports, so they run in parallel.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use nix::sys::signal::Signal;
use test_support::{Proxy, TestQueue, endpoint, is_alive, wait_for};

use common::{Api, WAIT, Worker, receive_count, task_events};

/// How long a process gets to exit once it should.
const EXIT: Duration = Duration::from_secs(30);

/// Waits until the queue holds nothing (visible, in flight or delayed): every message deleted.
async fn wait_empty(queue: &TestQueue, what: &str) {
    wait_for(what, WAIT, || async {
        (queue.count(&queue.url).await == 0).then_some(())
    })
    .await;
}

/// kill -9 of the worker's adapter while a task runs: its function processes die with it, and
/// the message, never deleted, comes back to a new worker when its visibility timeout ends.
#[tokio::test]
async fn a_task_survives_kill_9_of_its_worker() {
    let queue = TestQueue::create("e2e-kill9", 5, 5).await;
    let api = Api::start(&queue.url, &endpoint(), &[]).await;
    let mut worker1 = Worker::start(
        "e2e-kill9-worker1",
        &queue.url,
        &endpoint(),
        &["--max-concurrency", "1"],
    )
    .await;

    // Long enough that it cannot finish between `task started` and the kill.
    let task_id = api.accepted_task(5.0).await;
    let started = worker1.wait_task_event("task started", &task_id).await;
    assert_eq!(receive_count(&started), 1);
    let functions = worker1.function_processes();
    assert!(
        !functions.is_empty(),
        "the worker runs a `sleep` process:\n{}",
        worker1.service.output()
    );

    worker1.service.signal_process(Signal::SIGKILL);
    let status = worker1.service.wait_exit(EXIT).await;
    assert_eq!(status.signal(), Some(9), "the adapter died of SIGKILL");
    // The kernel kills the function processes with it (PR_SET_PDEATHSIG): no orphan is left
    // running the task or spinning on a dead Runtime API.
    wait_for(
        "the function processes to die with their adapter",
        EXIT,
        || async { functions.iter().all(|&pid| !is_alive(pid)).then_some(()) },
    )
    .await;
    assert!(
        worker1.task_events("task finished", &task_id).is_empty(),
        "the task finished before the kill: the test proved nothing"
    );

    let worker2 = Worker::start("e2e-kill9-worker2", &queue.url, &endpoint(), &[]).await;
    let finished = worker2.wait_task_event("task finished", &task_id).await;
    assert!(
        receive_count(&finished) >= 2,
        "the task ran again on a later delivery: {finished}"
    );
    wait_empty(&queue, "the finished task's message to be deleted").await;
    drop((api, worker1, worker2));
    queue.delete().await;
}

/// SIGTERM while a task runs, with a grace period shorter than the task: the adapter stops in
/// time, exits 0, and releases the message at once (visibility 0) rather than leaving it hidden
/// for its visibility timeout.
#[tokio::test]
async fn sigterm_releases_an_unfinished_task_at_once() {
    // A visibility timeout far longer than the receive below waits: only a release makes the
    // message visible again in time.
    let queue = TestQueue::create("e2e-sigterm", 60, 5).await;
    let api = Api::start(&queue.url, &endpoint(), &[]).await;
    let mut worker = Worker::start(
        "e2e-sigterm-worker",
        &queue.url,
        &endpoint(),
        &["--shutdown-grace", "1", "--max-concurrency", "1"],
    )
    .await;

    let task_id = api.accepted_task(10.0).await;
    worker.wait_task_event("task started", &task_id).await;
    let functions = worker.function_processes();
    assert!(!functions.is_empty(), "the worker runs a `sleep` process");

    worker.service.signal_process(Signal::SIGTERM);
    let status = worker.service.wait_exit(EXIT).await;
    let output = worker.service.output();
    assert_eq!(status.code(), Some(0), "a clean stop exits 0:\n{output}");
    assert!(
        functions.iter().all(|&pid| !is_alive(pid)),
        "the adapter stopped its function processes before exiting"
    );
    assert!(
        task_events(&output, "task finished", &task_id).is_empty(),
        "the grace period (1 s) cut the 10 s task short:\n{output}"
    );

    // Visible again at once: well within the 60 s visibility timeout.
    let messages = queue.receive(&queue.url, 10, 5).await;
    assert_eq!(
        messages.len(),
        1,
        "the released message is visible again at once:\n{output}"
    );
    let message = &messages[0];
    assert!(message.body().unwrap().contains(&task_id));
    let count = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse::<u32>().ok());
    assert_eq!(count, Some(2), "the worker's receive, then ours");
    drop(api);
    queue.delete().await;
}

/// The function process killed mid-invocation: the adapter keeps running, starts another, and
/// the failed batch's message, left to its visibility timeout, is run again to the end.
#[tokio::test]
async fn a_task_survives_the_death_of_its_function_process() {
    let queue = TestQueue::create("e2e-fnkill", 3, 5).await;
    let api = Api::start(&queue.url, &endpoint(), &[]).await;
    let mut worker = Worker::start(
        "e2e-fnkill-worker",
        &queue.url,
        &endpoint(),
        &["--max-concurrency", "1"],
    )
    .await;

    let task_id = api.accepted_task(3.0).await;
    let started = worker.wait_task_event("task started", &task_id).await;
    assert_eq!(receive_count(&started), 1);
    let functions = worker.function_processes();
    assert_eq!(
        functions.len(),
        1,
        "--max-concurrency 1 runs one `sleep` process"
    );
    let killed = functions[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(killed as i32), Signal::SIGKILL).unwrap();

    let finished = worker.wait_task_event("task finished", &task_id).await;
    assert!(
        receive_count(&finished) >= 2,
        "the task ran again on a later delivery: {finished}"
    );
    assert_eq!(
        worker.service.try_exit_status(),
        None,
        "the adapter outlives its function process:\n{}",
        worker.service.output()
    );
    let replacement = worker.function_processes();
    assert!(
        !replacement.is_empty() && !replacement.contains(&killed),
        "a new function process replaced {killed}: {replacement:?}"
    );
    assert_eq!(worker.readiness().await, Some(200), "ready again");
    wait_empty(&queue, "the finished task's message to be deleted").await;
    drop(api);
    queue.delete().await;
}

/// LocalStack unreachable under both the API and the worker, then back: the API answers 503
/// `queue_unavailable` with `Retry-After`, the worker says not ready but keeps running, and both
/// recover by themselves, the same processes, once the network is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_ride_out_an_sqs_outage() {
    // A long poll cut by the outage may still run inside LocalStack and take the next task, which
    // then stays hidden for the visibility timeout: keep both short (the grace caps long polls).
    let queue = TestQueue::create("e2e-outage", 10, 5).await;
    let proxy = Proxy::to_localstack().await;
    // Queue URLs name a host too: make every SQS call go through the proxy.
    let queue_url = proxy.rewrite(&queue.url);
    let api = Api::start(&queue_url, &proxy.url(), &[]).await;
    let mut worker = Worker::start(
        "e2e-outage-worker",
        &queue_url,
        &proxy.url(),
        &["--shutdown-grace", "5"],
    )
    .await;
    let worker_pid = worker.service.pid();

    // Through the proxy, all is well.
    let before = api.accepted_task(1.0).await;
    worker.wait_task_event("task finished", &before).await;

    proxy.cut();
    let refused = tokio::time::timeout(WAIT, api.post_task(1.0))
        .await
        .expect("POST /tasks answers during the outage")
        .expect("the API itself is up");
    assert_eq!(
        refused.status,
        503,
        "{}\n{}",
        refused.body,
        api.service.output()
    );
    assert_eq!(refused.json()["error"]["code"], "queue_unavailable");
    let retry_after = refused
        .header("retry-after")
        .and_then(|v| v.parse::<u32>().ok());
    assert!(
        retry_after.is_some_and(|s| s > 0),
        "a 503 says when to retry: {:?}",
        refused.headers
    );
    wait_for("the worker to say it is not ready", WAIT, || async {
        (worker.readiness().await == Some(503)).then_some(())
    })
    .await;
    assert!(
        is_alive(worker_pid),
        "the worker keeps running through the outage:\n{}",
        worker.service.output()
    );

    proxy.restore();
    // The client retries, as `Retry-After` invites it to; only 503s on the way.
    let after = wait_for("POST /tasks to be accepted again", WAIT, || async {
        let response = api.post_task(1.0).await.expect("the API answers");
        match response.status {
            202 => Some(response.json()["task_id"].as_str().unwrap().to_string()),
            503 => None,
            status => panic!("POST /tasks answered {status}: {}", response.body),
        }
    })
    .await;
    wait_for("the worker to be ready again", WAIT, || async {
        (worker.readiness().await == Some(200)).then_some(())
    })
    .await;
    worker.wait_task_event("task finished", &after).await;
    assert_eq!(
        worker.service.try_exit_status(),
        None,
        "the same worker process did it"
    );
    assert_eq!(worker.service.pid(), worker_pid);
    wait_empty(&queue, "both tasks' messages to be deleted").await;
    drop((api, worker, proxy));
    queue.delete().await;
}

/// SQS stops answering without closing anything (a black hole: a lost NAT entry, a dead load
/// balancer), then comes back. The API's SQS calls end by their own timeouts (503, as for an
/// outage); the worker's call in flight can only end by a timeout too, after which it must receive
/// again and run what was queued meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_recover_from_an_sqs_that_stops_answering() {
    let queue = TestQueue::create("e2e-blackhole", 10, 5).await;
    let proxy = Proxy::to_localstack().await;
    let queue_url = proxy.rewrite(&queue.url);
    let api = Api::start(&queue_url, &proxy.url(), &[]).await;
    let worker = Worker::start(
        "e2e-blackhole-worker",
        &queue_url,
        &proxy.url(),
        &["--max-concurrency", "1"],
    )
    .await;
    let before = api.accepted_task(1.0).await;
    worker.wait_task_event("task finished", &before).await;
    // Deleted: what the black hole swallows is the worker's next long poll, nothing else.
    wait_empty(&queue, "the first task's message to be deleted").await;

    proxy.black_hole();
    let refused = tokio::time::timeout(WAIT, api.post_task(1.0))
        .await
        .expect("POST /tasks answers while SQS is silent: the API's calls time out")
        .expect("the API itself is up");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "queue_unavailable");
    assert!(proxy.swallowed() > 0, "the black hole swallowed calls");
    proxy.restore();

    let after = wait_for("POST /tasks to be accepted again", WAIT, || async {
        let response = api.post_task(1.0).await.expect("the API answers");
        match response.status {
            202 => Some(response.json()["task_id"].as_str().unwrap().to_string()),
            503 => None,
            status => panic!("POST /tasks answered {status}: {}", response.body),
        }
    })
    .await;
    let finished = wait_for(
        "the worker to receive again once SQS answers (do its SQS calls time out?)",
        WAIT,
        || async {
            worker
                .task_events("task finished", &after)
                .into_iter()
                .next()
        },
    )
    .await;
    // The long poll the black hole swallowed may still have been open at LocalStack when the task
    // arrived: LocalStack handed it the message, whose answer was lost, so it comes back after the
    // visibility timeout. At-least-once: a second receive is allowed, a lost task is not.
    let receives = receive_count(&finished);
    assert!((1..=2).contains(&receives), "received {receives} times");
    wait_empty(&queue, "the second task's message to be deleted").await;
    drop((api, worker, proxy));
    queue.delete().await;
}
