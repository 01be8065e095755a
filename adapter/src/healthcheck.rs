//! `adapter healthcheck`: asks a running adapter's `/readyz`, for container health checks (the
//! image has no curl).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::HealthcheckArgs;

/// Why the adapter is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The admin URL does not parse.
    #[error("invalid admin URL {url:?}: {source}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        source: http::uri::InvalidUri,
    },
    /// No answer.
    #[error("no answer from {url}: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The client error.
        message: String,
    },
    /// An answer other than 200.
    #[error("not ready ({status}): {body}")]
    NotReady {
        /// The status received.
        status: http::StatusCode,
        /// The reason given.
        body: String,
    },
}

/// Succeeds when `/readyz` answers 200.
pub async fn check(args: &HealthcheckArgs) -> Result<(), HealthcheckError> {
    let url = format!("{}/readyz", args.admin_url.trim_end_matches('/'));
    let uri: http::Uri = url.parse().map_err(|source| HealthcheckError::BadUrl {
        url: url.clone(),
        source,
    })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let unreachable = |message: String| HealthcheckError::Unreachable {
        url: url.clone(),
        message,
    };
    let timeout = Duration::from_secs(u64::from(args.timeout));
    let response = tokio::time::timeout(timeout, client.get(uri))
        .await
        .map_err(|_| unreachable(format!("timed out after {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    if status == http::StatusCode::OK {
        Ok(())
    } else {
        Err(HealthcheckError::NotReady { status, body })
    }
}
