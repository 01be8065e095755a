//! The admin listener: `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Says whether the event source is connected, or why not.
pub type SourceCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    /// Function processes that have called `/next`.
    pub processes: watch::Receiver<usize>,
    /// The event source's connection.
    pub source: SourceCheck,
    /// Fired when shutdown starts: from then on the adapter is not ready.
    pub draining: CancellationToken,
}

impl Readiness {
    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        if self.draining.is_cancelled() {
            return Err("shutting down".to_owned());
        }
        if *self.processes.borrow() == 0 {
            return Err("no function process has called /next yet".to_owned());
        }
        (self.source)()
    }
}

#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// Serves the admin endpoints until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Admin {
            registry,
            readiness,
        });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(admin): State<Admin>) -> Response {
    match admin.readiness.check() {
        Ok(()) => axum::Json(json!({"ready": true})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &admin.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(
        processes: usize,
        source: Result<(), String>,
    ) -> (Readiness, watch::Sender<usize>) {
        let (sender, receiver) = watch::channel(processes);
        let readiness = Readiness {
            processes: receiver,
            source: Arc::new(move || source.clone()),
            draining: CancellationToken::new(),
        };
        (readiness, sender)
    }

    #[test]
    fn ready_needs_a_process_and_a_connected_source() {
        let (r, sender) = readiness(0, Ok(()));
        assert!(r.check().is_err());
        sender.send_replace(1);
        assert!(r.check().is_ok());
        r.draining.cancel();
        assert_eq!(r.check(), Err("shutting down".to_owned()));

        let (r, _sender) = readiness(1, Err("queue unreachable".into()));
        assert_eq!(r.check(), Err("queue unreachable".to_owned()));
    }
}
