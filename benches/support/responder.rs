//! **Benchmarks only**: an accept-all DynamoDB API responder. It answers `PutItem`, `DeleteItem`,
//! `UpdateItem`, `BatchWriteItem` (no unprocessed items) and `TransactWriteItems` with success,
//! after an optional per-request delay, and stores nothing. It lets a benchmark measure the relay's
//! own DynamoDB path (request building, SDK, signing, HTTP) without moto's ceiling. It never
//! stands in for DynamoDB in behaviour tests: those use moto.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub unknown: AtomicU64,
}

/// A running responder; stops when dropped.
pub struct Responder {
    addr: SocketAddr,
    cancel: CancellationToken,
    pub counts: Arc<Counts>,
}

impl Responder {
    /// Serves on 127.0.0.1 (a free port); every request waits `delay` before its answer.
    pub async fn start(delay: Duration) -> std::io::Result<Responder> {
        let counts = Arc::new(Counts::default());
        let c = Arc::clone(&counts);
        let app = Router::new().route(
            "/",
            post(move |headers: HeaderMap| {
                let c = Arc::clone(&c);
                async move { answer(&headers, delay, &c).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Responder {
            addr,
            cancel,
            counts,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn answer(headers: &HeaderMap, delay: Duration, counts: &Counts) -> Response {
    counts.requests.fetch_add(1, Ordering::Relaxed);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = match target.rsplit('.').next() {
        Some("PutItem" | "DeleteItem" | "UpdateItem" | "TransactWriteItems") => "{}",
        Some("BatchWriteItem") => r#"{"UnprocessedItems":{}}"#,
        _ => {
            counts.unknown.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
                r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"the benchmark responder answers writes only"}"#,
            )
                .into_response();
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        body,
    )
        .into_response()
}
