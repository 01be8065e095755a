//! `adapter healthcheck`: asks a running adapter's `/readyz`, for container health checks (the
//! image has no curl).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// The base URL to ask: `--admin-url`, else the admin listener's address (loopback for an
/// unspecified one).
fn admin_url(args: &HealthcheckArgs) -> String {
    if let Some(url) = &args.admin_url {
        return url.trim_end_matches('/').to_owned();
    }
    let mut addr = args.admin_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Succeeds when `/readyz` answers 200.
pub async fn check(args: &HealthcheckArgs) -> Result<(), HealthcheckError> {
    let url = format!("{}/readyz", admin_url(args));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, listen: &str) -> HealthcheckArgs {
        HealthcheckArgs {
            admin_url: url.map(str::to_owned),
            admin_listen: listen.parse().expect("an address"),
            timeout: 3,
        }
    }

    #[test]
    fn asks_the_admin_listener_unless_a_url_is_given() {
        assert_eq!(
            admin_url(&args(None, "127.0.0.1:9091")),
            "http://127.0.0.1:9091"
        );
        assert_eq!(
            admin_url(&args(None, "0.0.0.0:9092")),
            "http://127.0.0.1:9092"
        );
        assert_eq!(admin_url(&args(None, "[::]:9093")), "http://[::1]:9093");
        assert_eq!(
            admin_url(&args(Some("http://10.0.0.5:9000/"), "127.0.0.1:9091")),
            "http://10.0.0.5:9000"
        );
    }
}
