//! Streamed function replies (`Lambda-Runtime-Function-Response-Mode: streaming`).
//!
//! A source that can pass a stream on (the HTTP source, like a function URL in `RESPONSE_STREAM`
//! mode) gives its invocation a [`StreamHandoff`]. When the function replies in streaming mode,
//! the Runtime API hands the source a [`ResponseStream`] at the first byte and forwards the
//! function's chunks into it as they come; the invocation itself resolves when the stream ends, so
//! metrics, platform logs and the concurrency slot cover the whole stream. A mid-stream failure
//! (the function's error trailers, its timeout, its process dying, the size limit) ends the
//! stream with a [`StreamError`].
//!
//! Sources without a handoff (SQS, the Invoke API) get the reply buffered, as Lambda's `Invoke`
//! buffers a streaming function's reply: [`to_buffered`] turns an HTTP-integration stream (a JSON
//! prelude, eight NUL bytes, the body) into the API Gateway v2 reply it stands for.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::StreamExt as _;
use http::HeaderValue;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::invocation::{InvocationResponse, InvokeError};

/// The content type of a stream that starts with an HTTP prelude (status, headers, cookies).
pub const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

/// What ends an HTTP prelude.
pub const PRELUDE_DELIMITER: [u8; 8] = [0; 8];

/// Chunks in flight between the function and the consumer: beyond this, the function's writes
/// wait for the consumer (backpressure), so a slow client never makes the adapter buffer.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Why a stream ended before its end: the Lambda error type and the error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the response stream failed: {error_type}")]
pub struct StreamError {
    /// `Runtime.StreamError`, `Sandbox.Timedout`, `Function.ResponseSizeTooLarge`, or the type
    /// the function's `Lambda-Runtime-Function-Error-Type` trailer named.
    pub error_type: String,
    /// `{"errorType": ..., "errorMessage": ...}`, or the body the function's trailer carried.
    pub payload: Bytes,
}

impl StreamError {
    /// The error a failed invocation puts at the end of its stream.
    pub(crate) fn from_result(result: &Result<InvocationResponse, InvokeError>) -> Option<Self> {
        match result {
            Ok(InvocationResponse::Success(_)) => None,
            Ok(InvocationResponse::FunctionError {
                error_type,
                payload,
            }) => Some(Self {
                error_type: error_type.clone(),
                payload: payload.clone(),
            }),
            Err(error) => Some(Self {
                error_type: error.error_type().to_owned(),
                payload: crate::runtime_api::error_payload(error.error_type(), &error.to_string()),
            }),
        }
    }
}

/// Where a streamed reply goes: set on an [`Invocation`](crate::invocation::Invocation) by a
/// source that can stream. Made by [`channel`].
#[derive(Debug)]
pub struct StreamHandoff(oneshot::Sender<ResponseStream>);

/// A handoff for an invocation, and where its [`ResponseStream`] arrives if the function streams.
pub fn channel() -> (StreamHandoff, oneshot::Receiver<ResponseStream>) {
    let (sender, receiver) = oneshot::channel();
    (StreamHandoff(sender), receiver)
}

/// The host's side of an open stream: chunks go in through [`StreamWriter::send`]; the end, good
/// or bad, through the [`StreamEnd`] the job keeps.
pub(crate) struct StreamWriter(mpsc::Sender<Bytes>);

impl StreamWriter {
    /// Passes a chunk on, waiting while the consumer is [`CHUNKS_IN_FLIGHT`] behind. `false`:
    /// the consumer is gone (the client hung up); the function runs on, as on Lambda.
    pub(crate) async fn send(&self, chunk: Bytes) -> bool {
        self.0.send(chunk).await.is_ok()
    }
}

/// How the stream ends: sent once the invocation completes.
pub(crate) struct StreamEnd(oneshot::Sender<Result<(), StreamError>>);

impl StreamEnd {
    /// Ends the stream with the invocation's result.
    pub(crate) fn finish(self, result: &Result<InvocationResponse, InvokeError>) {
        let _ = self
            .0
            .send(StreamError::from_result(result).map_or(Ok(()), Err));
    }
}

impl StreamHandoff {
    /// Opens the stream: the source receives its [`ResponseStream`] now. `None` when the source
    /// no longer waits (its caller went away); the function's chunks are then drained unread.
    pub(crate) fn open(
        self,
        content_type: Option<HeaderValue>,
    ) -> Option<(StreamWriter, StreamEnd)> {
        let (chunks_tx, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (end_tx, end) = oneshot::channel();
        let stream = ResponseStream {
            content_type,
            chunks,
            end: Some(end),
            writer_done: false,
            done: false,
        };
        self.0.send(stream).ok()?;
        Some((StreamWriter(chunks_tx), StreamEnd(end_tx)))
    }
}

/// A function's reply, arriving as it is produced.
#[derive(Debug)]
pub struct ResponseStream {
    content_type: Option<HeaderValue>,
    chunks: mpsc::Receiver<Bytes>,
    /// `None` once the end was seen and was good: only the rest of the chunks remain.
    end: Option<oneshot::Receiver<Result<(), StreamError>>>,
    /// The writer has sent its last chunk.
    writer_done: bool,
    done: bool,
}

impl ResponseStream {
    /// The `Content-Type` the function sent with its stream.
    pub fn content_type(&self) -> Option<&HeaderValue> {
        self.content_type.as_ref()
    }

    /// The next chunk; `None` at a good end. A failure ends the stream at once, even with chunks
    /// still unread: whatever follows a timeout or an error is not part of the reply.
    pub async fn next(&mut self) -> Option<Result<Bytes, StreamError>> {
        if self.done {
            return None;
        }
        let item = loop {
            let Some(end) = self.end.as_mut() else {
                // A good end was seen: what the writer sent before it is all that remains.
                break self.chunks.recv().await.map(Ok);
            };
            if self.writer_done {
                let ended = end.await;
                self.end = None;
                break failure(ended);
            }
            tokio::select! {
                biased;
                ended = end => {
                    self.end = None;
                    match failure(ended) {
                        Some(error) => break Some(error),
                        None => continue,
                    }
                }
                chunk = self.chunks.recv() => match chunk {
                    Some(chunk) => break Some(Ok(chunk)),
                    // The writer is done: the end says whether that was the whole reply.
                    None => self.writer_done = true,
                },
            }
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    /// The stream as an HTTP body, after `first` (bytes already read from it): a failure aborts
    /// the body, so no client mistakes a broken reply for a whole one.
    pub fn into_body(self, first: Bytes) -> axum::body::Body {
        let first = (!first.is_empty()).then_some(Ok(first));
        let rest = futures::stream::unfold(self, |mut stream| async move {
            stream.next().await.map(|item| (item, stream))
        });
        axum::body::Body::from_stream(futures::stream::iter(first).chain(rest))
    }
}

/// The failure an end carries, if it carries one.
fn failure(
    ended: Result<Result<(), StreamError>, oneshot::error::RecvError>,
) -> Option<Result<Bytes, StreamError>> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(Err(error)),
        // The invocation ended without saying how (the host was torn down).
        Err(_) => Some(Err(abandoned())),
    }
}

fn abandoned() -> StreamError {
    StreamError {
        error_type: "Runtime.StreamError".to_owned(),
        payload: crate::runtime_api::error_payload(
            "Runtime.StreamError",
            "the stream ended without its invocation completing",
        ),
    }
}

/// Splits an HTTP-integration stream's start into its prelude and the body bytes after it; `None`
/// until the delimiter has arrived.
pub fn split_prelude(start: &[u8]) -> Option<(&[u8], &[u8])> {
    let split = start
        .windows(PRELUDE_DELIMITER.len())
        .position(|w| w == PRELUDE_DELIMITER)?;
    Some((&start[..split], &start[split + PRELUDE_DELIMITER.len()..]))
}

/// Whether a stream with this content type starts with an HTTP prelude.
pub fn is_http_integration(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(HTTP_INTEGRATION))
}

/// The buffered equivalent of a streamed reply; other content types pass through unchanged.
pub(crate) fn to_buffered(
    content_type: Option<&HeaderValue>,
    body: &Bytes,
) -> Result<Bytes, String> {
    if !is_http_integration(content_type) {
        return Ok(body.clone());
    }
    let (prelude, payload) =
        split_prelude(body).ok_or("streamed HTTP reply without the prelude delimiter")?;
    let reply = prelude_reply(prelude, Some(payload))
        .map_err(|e| format!("streamed HTTP reply with an unreadable prelude: {e}"))?;
    Ok(Bytes::from(reply))
}

/// An HTTP prelude as the API Gateway v2 reply it stands for, with `body` (base64) if given: a
/// status of 200 unless it says otherwise, and headers with several values (`lambda_http` sends
/// them as arrays) as `multiValueHeaders`. Streamed and buffered replies both go through here.
pub(crate) fn prelude_reply(prelude: &[u8], body: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let prelude: Value =
        serde_json::from_slice(prelude).map_err(|e| format!("the prelude is not JSON: {e}"))?;
    let Value::Object(mut prelude) = prelude else {
        return Err("the prelude is not a JSON object".to_owned());
    };
    let (mut single, mut multi) = (Map::new(), Map::new());
    if let Some(Value::Object(headers)) = prelude.remove("headers") {
        for (name, value) in headers {
            match value {
                Value::Array(values) => multi.insert(name, Value::Array(values)),
                value => single.insert(name, value),
            };
        }
    }
    let mut reply = json!({
        "statusCode": prelude.remove("statusCode").unwrap_or(json!(200)),
        "headers": single,
        "multiValueHeaders": multi,
    });
    if let Some(cookies) = prelude.remove("cookies") {
        reply["cookies"] = cookies;
    }
    if let Some(body) = body {
        reply["body"] = STANDARD.encode(body).into();
        reply["isBase64Encoded"] = true.into();
    }
    serde_json::to_vec(&reply).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: HeaderValue = HeaderValue::from_static(HTTP_INTEGRATION);

    #[test]
    fn prelude_and_body_become_a_buffered_reply() {
        let mut body = br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"]}"#.to_vec();
        body.extend_from_slice(&PRELUDE_DELIMITER);
        body.extend_from_slice(b"hello");
        let reply = to_buffered(Some(&HTTP), &Bytes::from(body)).expect("valid stream");
        let reply: Value = serde_json::from_slice(&reply).expect("json");
        assert_eq!(reply["statusCode"], 201);
        assert_eq!(reply["headers"]["x-a"], "1");
        assert_eq!(reply["cookies"][0], "c=1");
        assert_eq!(reply["body"], STANDARD.encode("hello"));
        assert_eq!(reply["isBase64Encoded"], true);
    }

    #[test]
    fn missing_delimiter_is_an_error() {
        assert!(to_buffered(Some(&HTTP), &Bytes::from_static(b"{}")).is_err());
    }

    #[test]
    fn other_streams_pass_through() {
        let body = Bytes::from_static(b"raw");
        assert_eq!(to_buffered(None, &body), Ok(body));
    }

    #[tokio::test]
    async fn chunks_arrive_in_order_and_a_good_end_ends_the_stream() {
        let (handoff, opened) = channel();
        let (writer, end) = handoff.open(Some(HTTP)).expect("source waits");
        let mut stream = opened.await.expect("stream");
        assert!(is_http_integration(stream.content_type()));
        assert!(writer.send(Bytes::from_static(b"a")).await);
        assert!(writer.send(Bytes::from_static(b"b")).await);
        drop(writer);
        end.finish(&Ok(InvocationResponse::Success(Bytes::new())));
        assert_eq!(stream.next().await, Some(Ok(Bytes::from_static(b"a"))));
        assert_eq!(stream.next().await, Some(Ok(Bytes::from_static(b"b"))));
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn a_failure_ends_the_stream_at_once() {
        let (handoff, opened) = channel();
        let (writer, end) = handoff.open(None).expect("source waits");
        let mut stream = opened.await.expect("stream");
        assert!(writer.send(Bytes::from_static(b"unread")).await);
        end.finish(&Err(InvokeError::Timeout { seconds: 1.0 }));
        let failure = stream.next().await;
        assert!(
            matches!(&failure, Some(Err(e)) if e.error_type == "Sandbox.Timedout"),
            "{failure:?}"
        );
        assert_eq!(stream.next().await, None);
        // The writer learns the consumer is gone once the stream is dropped.
        drop(stream);
        assert!(!writer.send(Bytes::from_static(b"more")).await);
    }

    #[tokio::test]
    async fn an_invocation_that_vanishes_fails_its_stream() {
        let (handoff, opened) = channel();
        let (writer, end) = handoff.open(None).expect("source waits");
        let mut stream = opened.await.expect("stream");
        drop((writer, end));
        assert!(
            matches!(stream.next().await, Some(Err(e)) if e.error_type == "Runtime.StreamError")
        );
    }

    #[test]
    fn a_source_that_stopped_waiting_gets_no_stream() {
        let (handoff, opened) = channel();
        drop(opened);
        assert!(handoff.open(None).is_none());
    }

    #[test]
    fn the_prelude_splits_at_the_first_delimiter() {
        let mut start = b"{}".to_vec();
        start.extend_from_slice(&PRELUDE_DELIMITER);
        start.extend_from_slice(b"body");
        assert_eq!(split_prelude(&start), Some((&b"{}"[..], &b"body"[..])));
        assert_eq!(split_prelude(b"{\"status"), None);
    }
}
