//! The admin HTTP server (axum): `/health` (liveness), `/ready`, `/metrics` (Prometheus) and
//! `/status` (JSON per partition). Read-only views of `StatusBoard`; it must not change state.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::status::StatusBoard;

pub fn router(status: Arc<StatusBoard>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(|| async { crate::telemetry::metrics::render() }),
        )
        .route("/status", get(status_json))
        .with_state(status)
}

async fn ready(State(s): State<Arc<StatusBoard>>) -> impl IntoResponse {
    let (ok, why) = s.readiness();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({ "ready": ok, "not_ready_because": why })),
    )
}

async fn status_json(State(s): State<Arc<StatusBoard>>) -> Json<serde_json::Value> {
    Json(s.to_json())
}

/// Binds `listen` (port 0 picks one) and serves until `cancel`. Returns the bound address.
pub async fn serve(
    listen: &str,
    status: Arc<StatusBoard>,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(status);
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    tracing::info!(%addr, "admin server listening");
    Ok(addr)
}
