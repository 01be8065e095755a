//! `streamer`: an HTTP function that replies in Lambda's streaming mode, through `lambda_http`'s
//! streaming runtime, for the adapter's response-streaming tests.
//!
//! The request body is JSON: `"status"`, `"headers"` (name to value) and `"cookies"` make the
//! status/headers prelude; `"chunks"` (strings, default `["hello ", "world"]`) are sent one after
//! another, and `"fill_bytes"` then sends that many more bytes in 64 KiB chunks. With
//! `"wait_file"` the function sends the first chunk, then waits for that file to exist before
//! sending the rest, so a test can read the first bytes while the function is still running;
//! `"delay_ms"` sleeps that long after the first chunk (a function that works between chunks),
//! `"interval_ms"` that long after every chunk (a steady stream); `"sleep_ms"` sleeps before
//! replying at all (nothing, not even the prelude, is sent meanwhile).
//! `"end"` says how the stream ends: `ok` (the default), `hang` (never ends: the adapter's timeout
//! must) or `error` (the reply is sent by hand, with Lambda's error trailers after the chunks,
//! because `lambda_runtime` 1.5 writes a stream error into the body instead of into trailers).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use lambda_runtime::streaming::{Sender, channel};
use serde_json::{Map, Value};

const FILL_CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run_with_streaming_response_concurrent(service_fn(handle)).await
}

async fn handle(request: Request) -> Result<Response<lambda_runtime::streaming::Body>, Error> {
    let plan: Value = match request.body() {
        Body::Text(text) => serde_json::from_str(text)?,
        Body::Binary(bytes) => serde_json::from_slice(bytes)?,
        _ => Value::Object(Map::new()),
    };
    if let Some(ms) = plan.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let chunks = chunks_of(&plan);
    let wait_file = plan
        .get("wait_file")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let delay = Duration::from_millis(plan.get("delay_ms").and_then(Value::as_u64).unwrap_or(0));
    let interval =
        Duration::from_millis(plan.get("interval_ms").and_then(Value::as_u64).unwrap_or(0));
    let end = plan.get("end").and_then(Value::as_str).unwrap_or("ok");
    if end == "error" {
        let request_id = request.lambda_context().request_id;
        let prelude = prelude_json(&plan);
        tokio::task::spawn_blocking(move || {
            post_with_error(&request_id, &prelude, &chunks, wait_file)
        })
        .await??;
        // Already answered by hand: the runtime's own reply is refused (410) and logged.
        return Ok(Response::new(lambda_runtime::streaming::Body::empty()));
    }
    let mut response = Response::builder().status(
        plan.get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200),
    );
    for (name, value) in header_pairs(&plan) {
        response = response.header(name, value);
    }
    for cookie in plan
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(cookie) = cookie.as_str() {
            response = response.header("set-cookie", cookie);
        }
    }
    let (sender, body) = channel();
    let hang = end == "hang";
    tokio::spawn(send_chunks(
        sender,
        chunks,
        wait_file,
        [delay, interval],
        hang,
    ));
    Ok(response.body(body)?)
}

/// The chunks to send: `"chunks"`, then `"fill_bytes"` bytes of `x`.
fn chunks_of(plan: &Value) -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = match plan.get("chunks").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        None => vec![b"hello ".to_vec(), b"world".to_vec()],
    };
    let mut fill = plan.get("fill_bytes").and_then(Value::as_u64).unwrap_or(0);
    while fill > 0 {
        let n = usize::try_from(fill).unwrap_or(FILL_CHUNK).min(FILL_CHUNK);
        chunks.push(vec![b'x'; n]);
        fill -= n as u64;
    }
    chunks
}

fn header_pairs(plan: &Value) -> Vec<(String, String)> {
    plan.get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
        .collect()
}

async fn send_chunks(
    mut sender: Sender,
    chunks: Vec<Vec<u8>>,
    wait_file: Option<String>,
    [delay, interval]: [Duration; 2],
    hang: bool,
) -> Result<(), Error> {
    for (n, chunk) in chunks.into_iter().enumerate() {
        sender.send_data(chunk.into()).await?;
        if n == 0 {
            if let Some(path) = &wait_file {
                while !Path::new(path).exists() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tokio::time::sleep(delay).await;
        }
        tokio::time::sleep(interval).await;
    }
    if hang {
        std::future::pending::<Infallible>().await;
    }
    Ok(())
}

/// The status/headers prelude as Lambda's HTTP integration expects it.
fn prelude_json(plan: &Value) -> String {
    let headers: Map<String, Value> = header_pairs(plan)
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    serde_json::json!({
        "statusCode": plan.get("status").and_then(Value::as_u64).unwrap_or(200),
        "headers": headers,
        "cookies": plan.get("cookies").cloned().unwrap_or(Value::Array(Vec::new())),
    })
    .to_string()
}

/// Streams a reply by hand, chunked, with `Lambda-Runtime-Function-Error-Type` and
/// `Lambda-Runtime-Function-Error-Body` trailers after the chunks: a function failing mid-stream.
fn post_with_error(
    request_id: &str,
    prelude: &str,
    chunks: &[Vec<u8>],
    wait_file: Option<String>,
) -> Result<(), Error> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let mut stream = std::net::TcpStream::connect(&api)?;
    write!(
        stream,
        "POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/vnd.awslambda.http-integration-response\r\n\
         Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut head = prelude.as_bytes().to_vec();
    head.extend_from_slice(&[0; 8]);
    write_chunk(&mut stream, &head)?;
    for (n, chunk) in chunks.iter().enumerate() {
        write_chunk(&mut stream, chunk)?;
        if n == 0
            && let Some(path) = &wait_file
        {
            while !Path::new(path).exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let body = serde_json::json!({
        "errorType": "Streamer.Failed",
        "errorMessage": "streamer failed mid-stream on purpose",
    })
    .to_string();
    let body = base64::engine::general_purpose::STANDARD.encode(body);
    write!(
        stream,
        "0\r\nLambda-Runtime-Function-Error-Type: Streamer.Failed\r\n\
         Lambda-Runtime-Function-Error-Body: {body}\r\n\r\n"
    )?;
    stream.flush()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(())
}

fn write_chunk(stream: &mut impl Write, chunk: &[u8]) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n", chunk.len())?;
    stream.write_all(chunk)?;
    stream.write_all(b"\r\n")?;
    stream.flush()
}
