//! The admin HTTP server (axum): `/health` (liveness), `/ready`, `/metrics` (Prometheus) and
//! `/status` (JSON per partition) — read-only views of `StatusBoard` — plus
//! `POST /admin/failover` and `POST /admin/failback`, which need the admin token
//! (`Authorization: Bearer <token>`) and hand the request to the region-health actor.
//! It must not change state itself, and never logs or echoes the token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use ractor::ActorRef;
use tokio_util::sync::CancellationToken;

use crate::config::Side;
use crate::region::failover::FailoverMsg;
use crate::status::StatusBoard;

/// What the admin endpoints can reach.
#[derive(Clone)]
pub struct AdminState {
    pub status: Arc<StatusBoard>,
    /// The region-health actor (absent without `[regions]`).
    pub failover: Arc<std::sync::Mutex<Option<ActorRef<FailoverMsg>>>>,
    /// The admin token; without one the admin actions are refused.
    pub token: Option<Arc<str>>,
}

impl AdminState {
    pub fn read_only(status: Arc<StatusBoard>) -> Self {
        AdminState {
            status,
            failover: Arc::new(std::sync::Mutex::new(None)),
            token: None,
        }
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/admin/failover", post(failover))
        .route("/admin/failback", post(failback))
        .with_state(state)
}

/// The recorder's metrics plus the per-partition series of the partitions owned now.
async fn metrics(State(state): State<AdminState>) -> String {
    let mut text = crate::telemetry::metrics::render();
    text.push_str(&state.status.partition_metrics());
    text.push_str(&state.status.ready_metric());
    text
}

/// Constant-time comparison, so response timing says nothing about the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
    let deny = |code: StatusCode, why: &str| Err((code, Json(serde_json::json!({ "error": why }))));
    let Some(token) = &state.token else {
        return deny(
            StatusCode::FORBIDDEN,
            "no admin token is configured (failover.admin_token_env / admin_token_file)",
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => {
            tracing::warn!("admin request with a wrong token refused");
            deny(StatusCode::UNAUTHORIZED, "wrong token")
        }
        None => deny(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <token>",
        ),
    }
}

async fn planned(state: AdminState, headers: HeaderMap, to: Side) -> impl IntoResponse {
    if let Err(e) = authorized(&state, &headers) {
        return e;
    }
    let actor = state.failover.lock().ok().and_then(|a| a.clone());
    let Some(actor) = actor else {
        return (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": "no [regions] configured" })),
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if actor.cast(FailoverMsg::Planned { to, reply: tx }).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "region-health actor unavailable" })),
        );
    }
    match rx.await {
        Ok(Ok(report)) => (StatusCode::OK, Json(report)),
        Ok(Err(why)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": why })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "region-health actor stopped" })),
        ),
    }
}

async fn failover(State(s): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    planned(s, headers, Side::Secondary).await
}

async fn failback(State(s): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    planned(s, headers, Side::Primary).await
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let s = &s.status;
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

async fn status_json(State(s): State<AdminState>) -> Json<serde_json::Value> {
    Json(s.status.to_json())
}

/// Binds `listen` (port 0 picks one) and serves until `cancel`. Returns the bound address.
pub async fn serve(
    listen: &str,
    state: AdminState,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(state);
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
