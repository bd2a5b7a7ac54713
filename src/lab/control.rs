//! The lab's control endpoint (loopback HTTP, JSON): the faults a user or the chaos suite drives
//! from outside a running `cdc-relay lab` — a broker or a whole region's cluster down and up,
//! partition leader moves, broker round-trip latency, Kafka error codes per API, the cluster link
//! paused, slowed and resumed, moto frozen and thawed, a region's schema registry stopped and
//! started. Every operation answers with the resulting state (`GET /state` shows it too).
//!
//! Test and demo support only; it must not be used by `relay::start`, and it binds to 127.0.0.1
//! only (it has no authentication).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::kafka::{MockError, MockKafka};
use super::registry_fixture::RegistryFixture;
use super::{Lab, SecondRegion};

/// What the endpoint controls: the primary region (the lab) and, with `--regions 2`, the
/// secondary with the link.
#[derive(Clone)]
pub struct Controlled {
    pub lab: Arc<Lab>,
    pub second: Option<Arc<SecondRegion>>,
}

impl Controlled {
    fn region(&self, name: &str) -> Result<(&MockKafka, &RegistryFixture), Failure> {
        match (name, &self.second) {
            ("primary", _) => Ok((&self.lab.kafka, &self.lab.registry)),
            ("secondary", Some(s)) => Ok((&s.kafka, &s.registry)),
            ("secondary", None) => Err(Failure::not_found(
                "no secondary region: start the lab with --regions 2",
            )),
            _ => Err(Failure::not_found(&format!(
                "no region {name:?}: primary or secondary"
            ))),
        }
    }

    /// Everything the endpoint can change, as it is now.
    pub fn state(&self) -> serde_json::Value {
        let region = |kafka: &MockKafka, registry: &RegistryFixture| {
            serde_json::json!({
                "bootstrap_servers": kafka.bootstrap_servers(),
                "cluster": kafka.state(),
                "schema_registry": {"url": registry.url(), "running": registry.is_running()},
            })
        };
        let mut regions = serde_json::Map::new();
        regions.insert(
            "primary".into(),
            region(&self.lab.kafka, &self.lab.registry),
        );
        if let Some(s) = &self.second {
            regions.insert("secondary".into(), region(&s.kafka, &s.registry));
        }
        serde_json::json!({
            "regions": regions,
            "link": self.second.as_ref().map(|s| serde_json::json!({
                "paused": s.link.is_paused(),
                "per_record_delay_ms": s.link.delay().as_secs_f64() * 1000.0,
                "copied": s.link.copied(),
                "offset_syncs": s.link.synced(),
            })),
            "moto": self.lab.moto.as_ref().map(|m| serde_json::json!({
                "endpoint": m.endpoint(), "pid": m.pid(), "frozen": m.is_frozen(),
            })),
        })
    }
}

/// An operation that could not be done, with its HTTP status.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl Failure {
    fn not_found(why: &str) -> Failure {
        Failure(StatusCode::NOT_FOUND, why.to_string())
    }
}

impl From<MockError> for Failure {
    fn from(e: MockError) -> Self {
        match e {
            MockError::BadRequest(why) => Failure(StatusCode::BAD_REQUEST, why),
            other => Failure(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type Answer = Result<Json<serde_json::Value>, Failure>;

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn done(c: &Controlled) -> Answer {
    Ok(Json(c.state()))
}

pub fn router(c: Controlled) -> Router {
    Router::new()
        .route(
            "/state",
            get(|State(c): State<Controlled>| async move { done(&c) }),
        )
        .route("/regions/{region}/down", post(region_down))
        .route("/regions/{region}/up", post(region_up))
        .route("/regions/{region}/brokers/{id}/down", post(broker_down))
        .route("/regions/{region}/brokers/{id}/up", post(broker_up))
        .route("/regions/{region}/brokers/{id}/latency", post(latency))
        .route("/regions/{region}/leaders", post(leader))
        .route("/regions/{region}/errors", post(inject))
        .route("/regions/{region}/errors/{api}", delete(clear))
        .route("/regions/{region}/registry/stop", post(registry_stop))
        .route("/regions/{region}/registry/start", post(registry_start))
        .route("/link/pause", post(link_pause))
        .route("/link/resume", post(link_resume))
        .route("/link/slow", post(link_slow))
        .route("/moto/freeze", post(moto_freeze))
        .route("/moto/thaw", post(moto_thaw))
        .with_state(c)
}

/// Serves the endpoint on 127.0.0.1 (a free port) until `cancel`; returns its address.
pub async fn serve(c: Controlled, cancel: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(c);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok(addr)
}

/// Blocking cluster calls (they wait for the mock cluster's thread) run off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn with_kafka(
    c: Controlled,
    region: String,
    f: impl FnOnce(&MockKafka) -> Result<(), MockError> + Send + 'static,
) -> Answer {
    let c2 = c.clone();
    blocking(move || {
        let (kafka, _) = c2.region(&region)?;
        f(kafka).map_err(Failure::from)
    })
    .await?;
    done(&c)
}

async fn region_down(State(c): State<Controlled>, Path(region): Path<String>) -> Answer {
    with_kafka(c, region, |k| k.broker_down(-1)).await
}

async fn region_up(State(c): State<Controlled>, Path(region): Path<String>) -> Answer {
    with_kafka(c, region, |k| k.broker_up(-1)).await
}

async fn broker_down(
    State(c): State<Controlled>,
    Path((region, id)): Path<(String, i32)>,
) -> Answer {
    with_kafka(c, region, move |k| k.broker_down(id)).await
}

async fn broker_up(State(c): State<Controlled>, Path((region, id)): Path<(String, i32)>) -> Answer {
    with_kafka(c, region, move |k| k.broker_up(id)).await
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

async fn latency(
    State(c): State<Controlled>,
    Path((region, id)): Path<(String, i32)>,
    Json(l): Json<Latency>,
) -> Answer {
    with_kafka(c, region, move |k| {
        k.round_trip_time(id, Duration::from_millis(l.ms))
    })
    .await
}

#[derive(Deserialize)]
struct Leader {
    topic: String,
    partition: i32,
    broker: i32,
}

async fn leader(
    State(c): State<Controlled>,
    Path(region): Path<String>,
    Json(l): Json<Leader>,
) -> Answer {
    with_kafka(c, region, move |k| {
        k.partition_leader(&l.topic, l.partition, l.broker)
    })
    .await
}

#[derive(Deserialize)]
struct Inject {
    api: String,
    error: String,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

async fn inject(
    State(c): State<Controlled>,
    Path(region): Path<String>,
    Json(i): Json<Inject>,
) -> Answer {
    with_kafka(c, region, move |k| {
        k.inject_errors(&i.api, &i.error, i.count)
    })
    .await
}

async fn clear(State(c): State<Controlled>, Path((region, api)): Path<(String, String)>) -> Answer {
    with_kafka(c, region, move |k| k.clear_errors(&api)).await
}

async fn registry_stop(State(c): State<Controlled>, Path(region): Path<String>) -> Answer {
    c.region(&region)?.1.stop();
    done(&c)
}

async fn registry_start(State(c): State<Controlled>, Path(region): Path<String>) -> Answer {
    c.region(&region)?.1.resume().await?;
    done(&c)
}

fn link(c: &Controlled) -> Result<&super::link::ClusterLink, Failure> {
    c.second
        .as_ref()
        .map(|s| &s.link)
        .ok_or_else(|| Failure::not_found("no cluster link: start the lab with --regions 2"))
}

async fn link_pause(State(c): State<Controlled>) -> Answer {
    link(&c)?.pause();
    done(&c)
}

async fn link_resume(State(c): State<Controlled>) -> Answer {
    let l = link(&c)?;
    l.slow(Duration::ZERO);
    l.resume();
    done(&c)
}

#[derive(Deserialize)]
struct Slow {
    per_record_ms: f64,
}

async fn link_slow(State(c): State<Controlled>, Json(s): Json<Slow>) -> Answer {
    if !(0.0..=10_000.0).contains(&s.per_record_ms) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "per_record_ms must be within 0..=10000".into(),
        ));
    }
    link(&c)?.slow(Duration::from_secs_f64(s.per_record_ms / 1000.0));
    done(&c)
}

fn moto(c: &Controlled) -> Result<&super::moto::Moto, Failure> {
    c.lab
        .moto
        .as_ref()
        .ok_or_else(|| Failure::not_found("moto is not running in this lab"))
}

async fn moto_freeze(State(c): State<Controlled>) -> Answer {
    moto(&c)?.pause()?;
    done(&c)
}

async fn moto_thaw(State(c): State<Controlled>) -> Answer {
    moto(&c)?.resume()?;
    done(&c)
}
