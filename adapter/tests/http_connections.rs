//! `adapter http` keeps its connections to limits: a slow request head, a long idle and a flood
//! of connections cannot hold the listener (slowloris), and health checks keep answering.

mod common;

use std::time::Duration;

use common::{Spawn, WAIT, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection, for at most [`WAIT`]; returns what came.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_closes_the_connection() {
    let mut adapter = Spawn::http("echo")
        .args(&["--header-read-timeout", "1", "--idle-timeout", "60"])
        .start();
    adapter.wait_ready().await;
    let mut slow = TcpStream::connect(adapter.http).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    // The head never ends: the connection is closed without an answer.
    assert_eq!(read_until_closed(&mut slow).await, "");
    adapter
        .wait_metric("adapter_http_connections_timed_out_total", |n| n >= 1.0)
        .await;
}

#[tokio::test]
async fn a_connection_is_kept_alive_between_requests_and_closed_when_idle() {
    let mut adapter = Spawn::http("echo")
        .args(&["--header-read-timeout", "60", "--idle-timeout", "2"])
        .start();
    adapter.wait_ready().await;
    let mut stream = TcpStream::connect(adapter.http).await.expect("connect");
    // Two requests on one connection: keep-alive works.
    for _ in 0..2 {
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        drain_response(&mut stream).await;
    }
    // Then nothing: the connection is closed once idle for the idle timeout.
    let rest = read_until_closed(&mut stream).await;
    assert_eq!(rest, "");
}

/// Reads the rest of one response: its head, then `content-length` bytes of body.
async fn drain_response(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(1))), "response cut short: {read:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("a content-length");
    let mut body = vec![0u8; length];
    let read = tokio::time::timeout(WAIT, stream.read_exact(&mut body)).await;
    assert!(matches!(read, Ok(Ok(_))), "body cut short: {read:?}");
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_and_health_checks_answer() {
    let mut adapter = Spawn::http("echo")
        .args(&["--max-connections", "2", "--idle-timeout", "600"])
        .start();
    adapter.wait_ready().await;
    let first = TcpStream::connect(adapter.http).await.expect("connect");
    let _second = TcpStream::connect(adapter.http).await.expect("connect");
    // A third client connects (the kernel's backlog) but is not served while two are open.
    let url = adapter.http_url("/third");
    let third = tokio::spawn(async move { get(&url).await });
    // A negative can only be watched for a while: half a second without an answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "served beyond the connection cap");
    // The admin listener is not behind the cap.
    let health = get(&format!("http://{}/healthz", adapter.admin)).await;
    assert!(health.is_ok_and(|reply| reply.status == 200));
    // One closes: the third is served.
    drop(first);
    let reply = tokio::time::timeout(WAIT, third)
        .await
        .expect("the third client was never served")
        .expect("task")
        .expect("answer");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408() {
    let mut adapter = Spawn::http("echo")
        .args(&["--body-read-timeout", "1"])
        .start();
    adapter.wait_ready().await;
    let mut slow = TcpStream::connect(adapter.http).await.expect("connect");
    slow.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .await
        .expect("write");
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
