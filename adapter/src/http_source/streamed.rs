//! A streamed reply as an HTTP response, sent as the function produces it (a function URL in
//! `RESPONSE_STREAM` mode).
//!
//! An HTTP-integration stream (`lambda_http`'s streaming responses) starts with a JSON prelude,
//! `{"statusCode", "headers", "cookies"}`, then eight NUL bytes, then the body: the response's head
//! waits for the prelude, the body follows chunk by chunk. Any other stream is the body of a 200
//! response with the function's content type. A failure after the head is out aborts the
//! response, so the client sees a broken transfer, never a short body that looks whole.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use super::response::{ReplyError, to_http_response};
use crate::response_stream::{
    PRELUDE_DELIMITER, ResponseStream, StreamError, is_http_integration, prelude_reply,
    split_prelude,
};

/// Longest prelude read before the body: a prelude is a status and headers, so one this long is
/// a function that forgot the delimiter.
const MAX_PRELUDE_BYTES: usize = 64 * 1024;

/// Why a streamed reply gave no response head.
#[derive(Debug, thiserror::Error)]
pub enum StreamedReplyError {
    /// The invocation failed before the head was complete.
    #[error(transparent)]
    Failed(#[from] StreamError),
    /// The prelude is missing, too long, or not a valid response head.
    #[error(transparent)]
    Malformed(#[from] ReplyError),
}

/// The response for a streamed reply, once its head is known; the body streams on.
pub async fn streamed_response(
    mut stream: ResponseStream,
) -> Result<Response<Body>, StreamedReplyError> {
    if !is_http_integration(stream.content_type()) {
        let content_type = stream
            .content_type()
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut response = Response::new(stream.into_body(Bytes::new()));
        response.headers_mut().insert(CONTENT_TYPE, content_type);
        return Ok(response);
    }
    let mut start = BytesMut::new();
    let (prelude, rest) = loop {
        // The delimiter may straddle chunks; what was searched before it is not searched again.
        let searched = start.len().saturating_sub(PRELUDE_DELIMITER.len() - 1);
        match stream.next().await {
            Some(Ok(chunk)) => start.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(error.into()),
            None => return Err(malformed("the stream ended before its prelude did")),
        }
        if let Some((_, rest)) = split_prelude(&start[searched..]) {
            let prelude_len = start.len() - rest.len() - PRELUDE_DELIMITER.len();
            let rest = Bytes::copy_from_slice(rest);
            break (head_of(&start[..prelude_len])?, rest);
        }
        if start.len() > MAX_PRELUDE_BYTES {
            return Err(malformed(
                "no prelude delimiter in the stream's first 64 KiB",
            ));
        }
    };
    let mut response = to_http_response(&prelude)?;
    *response.body_mut() = stream.into_body(rest);
    Ok(response)
}

/// The prelude as a reply without a body, for [`to_http_response`].
fn head_of(prelude: &[u8]) -> Result<Vec<u8>, ReplyError> {
    prelude_reply(prelude, None).map_err(ReplyError::Malformed)
}

fn malformed(message: &str) -> StreamedReplyError {
    ReplyError::Malformed(message.to_owned()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocation::{InvocationResponse, InvokeError};
    use crate::response_stream::{HTTP_INTEGRATION, channel};
    use http_body_util::BodyExt as _;

    /// A stream fed with `chunks`, ended with `end`.
    async fn stream_of(
        content_type: Option<&'static str>,
        chunks: Vec<&'static [u8]>,
        end: Result<InvocationResponse, InvokeError>,
    ) -> ResponseStream {
        let (handoff, opened) = channel();
        let (writer, stream_end) = handoff
            .open(content_type.map(HeaderValue::from_static))
            .expect("open");
        tokio::spawn(async move {
            for chunk in chunks {
                writer.send(Bytes::from_static(chunk)).await;
            }
            drop(writer);
            stream_end.finish(&end);
        });
        opened.await.expect("stream")
    }

    fn ok() -> Result<InvocationResponse, InvokeError> {
        Ok(InvocationResponse::Success(Bytes::new()))
    }

    #[tokio::test]
    async fn the_prelude_makes_the_head_and_the_rest_the_body() {
        let prelude: &[u8] =
            br#"{"statusCode":201,"headers":{"x-a":"1","x-m":["a","b"]},"cookies":["c=1"]}"#;
        let stream = stream_of(
            Some(HTTP_INTEGRATION),
            vec![
                &prelude[..10],
                &prelude[10..],
                &PRELUDE_DELIMITER,
                b"hel",
                b"lo",
            ],
            ok(),
        )
        .await;
        let response = streamed_response(stream).await.expect("response");
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["x-a"], "1");
        let multi: Vec<_> = response.headers().get_all("x-m").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(response.headers()["set-cookie"], "c=1");
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes(), Bytes::from_static(b"hello"));
    }

    #[tokio::test]
    async fn a_plain_stream_is_a_200_with_the_functions_content_type() {
        let stream = stream_of(Some("text/plain"), vec![b"a", b"b"], ok()).await;
        let response = streamed_response(stream).await.expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes(), Bytes::from_static(b"ab"));
    }

    #[tokio::test]
    async fn a_failure_mid_body_breaks_the_body() {
        let failed = Err(InvokeError::Timeout { seconds: 1.0 });
        let stream = stream_of(Some("text/plain"), vec![b"partial"], failed).await;
        let response = streamed_response(stream).await.expect("head");
        assert!(response.into_body().collect().await.is_err());
    }

    #[tokio::test]
    async fn bad_preludes_and_early_failures_give_no_head() {
        let no_delimiter = stream_of(Some(HTTP_INTEGRATION), vec![b"{}"], ok()).await;
        assert!(matches!(
            streamed_response(no_delimiter).await,
            Err(StreamedReplyError::Malformed(_))
        ));
        let not_object = stream_of(
            Some(HTTP_INTEGRATION),
            vec![b"[]", &PRELUDE_DELIMITER],
            ok(),
        );
        assert!(matches!(
            streamed_response(not_object.await).await,
            Err(StreamedReplyError::Malformed(_))
        ));
        let failed = Err(InvokeError::ExitError {
            detail: "signal 9".into(),
        });
        let early = stream_of(Some(HTTP_INTEGRATION), vec![b"{\"statusCode\""], failed).await;
        assert!(matches!(
            streamed_response(early).await,
            Err(StreamedReplyError::Failed(e)) if e.error_type == "Runtime.ExitError"
        ));
    }
}
