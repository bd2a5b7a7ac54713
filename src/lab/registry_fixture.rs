//! **Schema-registry fixture** (test and demo support, not product code).
//!
//! No Confluent-compatible registry can be installed here, so this implements only the REST
//! subset the relay's client and the generator use, following Confluent's documented API:
//! `POST /subjects/{subject}/versions` → `{"id"}`, `GET /schemas/ids/{id}` → `{"schema"}`,
//! `GET /subjects`, error bodies `{"error_code", "message"}`, optional HTTP basic auth.
//! The product client (`decode::registry`) works unchanged against the real registry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Store {
    /// id → schema text.
    by_id: Vec<String>,
    /// subject → ids registered under it.
    subjects: HashMap<String, Vec<u32>>,
}

#[derive(Clone)]
struct Fixture {
    store: Arc<Mutex<Store>>,
    auth: Option<String>,
}

/// A running fixture; stops when dropped. The lab's control endpoint can stop it and start it
/// again on the same address (a region's registry going away and coming back).
pub struct RegistryFixture {
    addr: SocketAddr,
    cancel: Mutex<Option<CancellationToken>>,
    fixture: Fixture,
}

impl RegistryFixture {
    /// Starts on 127.0.0.1 with a free port. With `auth = Some((user, pass))` every request needs basic auth.
    pub async fn start(auth: Option<(&str, &str)>) -> std::io::Result<RegistryFixture> {
        Self::serve(Arc::new(Mutex::new(Store::default())), auth).await
    }

    /// A second registry serving the same schemas under the same ids, as Confluent Schema
    /// Linking keeps a secondary region's registry (here: one shared store, no lag). It runs on
    /// its own port and lives on when `self` is dropped.
    pub async fn start_linked(
        &self,
        auth: Option<(&str, &str)>,
    ) -> std::io::Result<RegistryFixture> {
        Self::serve(Arc::clone(&self.fixture.store), auth).await
    }

    async fn serve(
        store: Arc<Mutex<Store>>,
        auth: Option<(&str, &str)>,
    ) -> std::io::Result<RegistryFixture> {
        let fixture = Fixture {
            store,
            auth: auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = Self::spawn(listener, fixture.clone());
        Ok(RegistryFixture {
            addr,
            cancel: Mutex::new(Some(cancel)),
            fixture,
        })
    }

    fn spawn(listener: tokio::net::TcpListener, fixture: Fixture) -> CancellationToken {
        let app = Router::new()
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}/versions", post(register))
            .route("/schemas/ids/{id}", get(schema_by_id))
            .with_state(fixture);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await;
        });
        cancel
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.cancel.lock().is_ok_and(|c| c.is_some())
    }

    /// Stops serving (connections are refused) and keeps the schemas.
    pub fn stop(&self) {
        if let Ok(mut c) = self.cancel.lock()
            && let Some(c) = c.take()
        {
            c.cancel();
        }
    }

    /// Serves again on the same address after `stop`.
    pub async fn resume(&self) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        // The old listener closes asynchronously: retry the bind for a moment.
        let mut last = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    let cancel = Self::spawn(l, self.fixture.clone());
                    if let Ok(mut c) = self.cancel.lock() {
                        *c = Some(cancel);
                    }
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind")))
    }
}

impl Drop for RegistryFixture {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )],
        serde_json::json!({ "error_code": code, "message": message }).to_string(),
    )
        .into_response()
}

fn ok(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )],
        body.to_string(),
    )
        .into_response()
}

fn check_auth(fx: &Fixture, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match &fx.auth {
        None => Ok(()),
        Some(expected) => {
            let got = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if got == Some(expected.as_str()) {
                Ok(())
            } else {
                Err(Box::new(error(
                    StatusCode::UNAUTHORIZED,
                    401,
                    "Unauthorized",
                )))
            }
        }
    }
}

async fn subjects(State(fx): State<Fixture>, headers: HeaderMap) -> Response {
    if let Err(r) = check_auth(&fx, &headers) {
        return *r;
    }
    let names: Vec<String> = fx
        .store
        .lock()
        .map(|s| s.subjects.keys().cloned().collect())
        .unwrap_or_default();
    ok(serde_json::json!(names))
}

async fn register(
    State(fx): State<Fixture>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_auth(&fx, &headers) {
        return *r;
    }
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid request body",
        );
    };
    let Some(schema) = req.get("schema").and_then(|s| s.as_str()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "Missing schema");
    };
    let canonical = match apache_avro::Schema::parse_str(schema) {
        Ok(s) => s.canonical_form(),
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                &format!("Invalid schema: {e}"),
            );
        }
    };
    let Ok(mut store) = fx.store.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, 50001, "store poisoned");
    };
    // Ids are global and stable per canonical schema, as in Confluent's registry.
    let id = match store.by_id.iter().position(|s| {
        apache_avro::Schema::parse_str(s)
            .map(|p| p.canonical_form())
            .ok()
            .as_deref()
            == Some(&canonical)
    }) {
        Some(i) => u32::try_from(i + 1).unwrap_or(u32::MAX),
        None => {
            store.by_id.push(schema.to_string());
            u32::try_from(store.by_id.len()).unwrap_or(u32::MAX)
        }
    };
    let ids = store.subjects.entry(subject).or_default();
    if !ids.contains(&id) {
        ids.push(id);
    }
    ok(serde_json::json!({ "id": id }))
}

async fn schema_by_id(
    State(fx): State<Fixture>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&fx, &headers) {
        return *r;
    }
    let schema = fx.store.lock().ok().and_then(|s| {
        id.checked_sub(1)
            .and_then(|i| s.by_id.get(i as usize).cloned())
    });
    match schema {
        Some(s) => ok(serde_json::json!({ "schema": s })),
        None => error(
            StatusCode::NOT_FOUND,
            40403,
            &format!("Schema {id} not found"),
        ),
    }
}
