//! Confluent Schema Registry client: fetch writer schemas by id (cached), register schemas
//! (used by `generate`), basic auth, retries with backoff on transient failures.
//!
//! Follows Confluent's documented REST API (`GET /schemas/ids/{id}`,
//! `POST /subjects/{subject}/versions`, error bodies `{"error_code", "message"}`), so it works
//! unchanged against the real registry. It must not decode records.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::schema::ResolvedSchema;

use crate::config::RegistryConfig;
use crate::decode::value::Names;

/// A parsed writer schema with its named types resolved.
#[derive(Debug)]
pub struct WriterSchema {
    pub id: u32,
    pub schema: Schema,
    pub names: Names,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    /// The registry says the id does not exist (HTTP 404, error_code 40403). Poison.
    #[error("schema id {id} not found in the registry ({message})")]
    NotFound { id: u32, message: String },
    /// 401/403: credentials are wrong. A misconfiguration, not the record's fault.
    #[error("schema registry rejected the credentials (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// 5xx, timeouts, connection refused: retried; after `max_attempts` still transient.
    #[error("schema registry unavailable after {attempts} attempt(s): {message}")]
    Unavailable { attempts: u32, message: String },
    /// The registry returned a schema we cannot parse (or a non-Avro schema type).
    #[error("schema id {id} is not a usable Avro schema: {message}")]
    BadSchema { id: u32, message: String },
    /// Any other 4xx (e.g. 422 invalid schema on register).
    #[error("schema registry request failed (HTTP {status}, code {code}): {message}")]
    Rejected {
        status: u16,
        code: i64,
        message: String,
    },
    #[error("schema registry is not configured (set schema_registry.url or schemas_dir)")]
    NotConfigured,
}

impl RegistryError {
    /// Whether a record that needs this schema is poison (can never succeed).
    pub fn is_poison(&self) -> bool {
        matches!(
            self,
            RegistryError::NotFound { .. } | RegistryError::BadSchema { .. }
        )
    }
}

#[derive(serde::Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: i64,
    #[serde(default)]
    message: String,
}

#[derive(serde::Deserialize)]
struct IdResponse {
    id: u32,
}

/// Schema registry client with an id → schema cache. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: Option<String>,
    http: reqwest::Client,
    auth: Option<(String, Option<String>)>,
    max_attempts: u32,
    schemas_dir: Option<PathBuf>,
    cache: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl RegistryClient {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| RegistryError::Unavailable {
                attempts: 0,
                message: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                base_url: cfg
                    .url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_string()),
                http,
                auth: cfg.username.clone().map(|u| (u, cfg.password.clone())),
                max_attempts: cfg.max_attempts.max(1),
                schemas_dir: cfg.schemas_dir.as_ref().map(PathBuf::from),
                cache: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Number of schemas cached (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.inner.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    /// The writer schema for `id`, from the cache, `schemas_dir`, or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(s) = self
            .inner
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(&id).cloned())
        {
            return Ok(s);
        }
        let text = match self.read_schemas_dir(id)? {
            Some(t) => t,
            None => self.fetch(id).await?,
        };
        let parsed = Arc::new(parse_writer_schema(id, &text)?);
        if let Ok(mut c) = self.inner.cache.write() {
            c.insert(id, Arc::clone(&parsed));
        }
        metrics::gauge!("cdc_relay_schema_cache_size").set(self.cached() as f64);
        Ok(parsed)
    }

    fn read_schemas_dir(&self, id: u32) -> Result<Option<String>, RegistryError> {
        let Some(dir) = &self.inner.schemas_dir else {
            return Ok(None);
        };
        let path = dir.join(format!("{id}.avsc"));
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.inner.base_url.is_none() {
                    Err(RegistryError::NotFound {
                        id,
                        message: format!("{} does not exist", path.display()),
                    })
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(RegistryError::Unavailable {
                attempts: 1,
                message: format!("cannot read {}: {e}", path.display()),
            }),
        }
    }

    async fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let base = self
            .inner
            .base_url
            .as_ref()
            .ok_or(RegistryError::NotConfigured)?;
        let url = format!("{base}/schemas/ids/{id}");
        let body = self
            .with_retries(true, || self.request(reqwest::Method::GET, &url, None))
            .await
            .map_err(|e| match e {
                RegistryError::Rejected {
                    status: 404,
                    message,
                    ..
                } => RegistryError::NotFound { id, message },
                other => other,
            })?;
        let resp: SchemaResponse =
            serde_json::from_str(&body).map_err(|e| RegistryError::BadSchema {
                id,
                message: format!("unexpected response body: {e}"),
            })?;
        if let Some(t) = resp.schema_type
            && t != "AVRO"
        {
            return Err(RegistryError::BadSchema {
                id,
                message: format!("schemaType {t} is not supported (only AVRO)"),
            });
        }
        Ok(resp.schema)
    }

    /// Registers `schema` under `subject` and returns its id (idempotent on the registry side).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let base = self
            .inner
            .base_url
            .as_ref()
            .ok_or(RegistryError::NotConfigured)?;
        let url = format!("{base}/subjects/{subject}/versions");
        let payload = serde_json::json!({ "schema": schema }).to_string();
        let body = self
            .with_retries(false, || {
                self.request(reqwest::Method::POST, &url, Some(payload.clone()))
            })
            .await?;
        let r: IdResponse = serde_json::from_str(&body).map_err(|e| RegistryError::Rejected {
            status: 200,
            code: 0,
            message: format!("unexpected response body: {e}"),
        })?;
        Ok(r.id)
    }

    /// Runs `f` until it succeeds or fails for good. Transient failures (5xx, timeouts, refused
    /// connections) are retried up to `max_attempts`; with `retry_not_found`, so is a 404 (a schema
    /// registered a moment ago may not have reached the replica that answers yet).
    async fn with_retries<F, Fut>(
        &self,
        retry_not_found: bool,
        mut f: F,
    ) -> Result<String, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<String, RegistryError>>,
    {
        let mut backoff = crate::sinks::retry::Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            2.0,
        );
        loop {
            let result = f().await;
            let transient = match &result {
                Err(RegistryError::Unavailable { .. }) => true,
                Err(RegistryError::Rejected { status: 404, .. }) => retry_not_found,
                _ => false,
            };
            if !transient {
                return result;
            }
            let attempts = backoff.attempts() + 1;
            if attempts >= self.inner.max_attempts {
                return match result {
                    Err(RegistryError::Unavailable { message, .. }) => {
                        Err(RegistryError::Unavailable { attempts, message })
                    }
                    other => other,
                };
            }
            if let Err(e) = &result {
                tracing::warn!(attempt = attempts, error = %e, "schema registry request failed; retrying");
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<String>,
    ) -> Result<String, RegistryError> {
        let mut req = self.inner.http.request(method, url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some((u, p)) = &self.inner.auth {
            req = req.basic_auth(u, p.as_ref());
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(b);
        }
        let resp = req.send().await.map_err(|e| RegistryError::Unavailable {
            attempts: 1,
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| RegistryError::Unavailable {
            attempts: 1,
            message: e.to_string(),
        })?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let err: ErrorBody = serde_json::from_str(&text).unwrap_or(ErrorBody {
            error_code: 0,
            message: text.chars().take(200).collect(),
        });
        Err(match status {
            401 | 403 => RegistryError::Unauthorized {
                status,
                message: err.message,
            },
            500..=599 | 408 | 429 => RegistryError::Unavailable {
                attempts: 1,
                message: format!("HTTP {status}: {}", err.message),
            },
            _ => RegistryError::Rejected {
                status,
                code: err.error_code,
                message: err.message,
            },
        })
    }
}

/// Parses an Avro schema text and resolves its named types.
pub fn parse_writer_schema(id: u32, text: &str) -> Result<WriterSchema, RegistryError> {
    let bad = |e: apache_avro::Error| RegistryError::BadSchema {
        id,
        message: e.to_string(),
    };
    let schema = Schema::parse_str(text).map_err(bad)?;
    let names = ResolvedSchema::try_from(&schema)
        .map_err(bad)?
        .get_names()
        .iter()
        .map(|(n, s)| (n.clone(), (*s).clone()))
        .collect();
    Ok(WriterSchema { id, schema, names })
}
