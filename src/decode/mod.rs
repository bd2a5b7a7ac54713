//! Decoding: Kafka record bytes → `Decoded` (a `ChangeEvent` or a counted skip).
//!
//! Stages: wire format (`avro.rs`) → writer schema (`registry.rs`) → Avro datum to value in one
//! pass (`value.rs`) → envelope (`envelope/`). JSON values skip the first three. This module must not
//! know about sinks or offsets; it only says what a record is, or why it cannot be decoded.

pub mod avro;
pub mod envelope;
pub mod registry;
pub mod value;

use crate::config::{RouteConfig, ValueFormat};
use crate::error_class::ErrorClass;
use crate::event::{Seq, SourcePos, Value};
pub use envelope::{Decoded, Skip};
use registry::{RegistryClient, RegistryError, WriterSchema};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Wire(#[from] avro::WireError),
    #[error("schema id {id}: {source}")]
    Registry { id: u32, source: RegistryError },
    #[error("Avro decode failed with writer schema id {id}: {source}")]
    Avro { id: u32, source: value::ValueError },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    #[error("version_field {field}: {detail}")]
    VersionField { field: String, detail: String },
}

impl DecodeError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DecodeError::Registry { source, .. } => match source {
                RegistryError::NotFound { .. } | RegistryError::BadSchema { .. } => {
                    ErrorClass::Poison
                }
                RegistryError::Unavailable { .. } => ErrorClass::Retryable,
                RegistryError::Unauthorized { .. }
                | RegistryError::NotConfigured
                | RegistryError::Rejected { .. } => ErrorClass::Misconfiguration,
            },
            _ => ErrorClass::Poison,
        }
    }

    /// A short, stable reason label for metrics and the DLQ.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Wire(avro::WireError::BadMagic(_)) => "bad_magic",
            DecodeError::Wire(avro::WireError::TooShort(_)) => "too_short",
            DecodeError::Registry {
                source: RegistryError::NotFound { .. },
                ..
            } => "unknown_schema_id",
            DecodeError::Registry {
                source: RegistryError::BadSchema { .. },
                ..
            } => "bad_schema",
            DecodeError::Registry { .. } => "registry_unavailable",
            DecodeError::Avro { .. } => "avro_decode",
            DecodeError::Json(_) => "json_decode",
            DecodeError::Envelope(_) => "envelope",
            DecodeError::VersionField { .. } => "version_field",
        }
    }
}

/// Decodes records for the routes with one schema registry. Cheap to clone (the registry
/// client's cache is shared). With a registry per region, the relay hands each consumer the
/// decoder of the region it reads: a dead region's registry is gone with it.
#[derive(Clone)]
pub struct Decoder {
    registry: RegistryClient,
}

impl Decoder {
    pub fn new(registry: RegistryClient) -> Self {
        Decoder { registry }
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Decodes one record's value for `route`. `payload = None` is a Kafka tombstone.
    pub async fn decode(
        &self,
        route: &RouteConfig,
        payload: Option<&[u8]>,
        pos: SourcePos,
    ) -> Result<Decoded, DecodeError> {
        self.decode_memo(&mut None, route, payload, pos).await
    }

    /// `decode` with the caller's memo of the last writer schema used: a partition's records
    /// mostly share one, so the registry client's shared cache (a lock and a shared reference
    /// count) is consulted only when the schema id changes.
    pub async fn decode_memo(
        &self,
        memo: &mut Option<Arc<WriterSchema>>,
        route: &RouteConfig,
        payload: Option<&[u8]>,
        pos: SourcePos,
    ) -> Result<Decoded, DecodeError> {
        let Some(payload) = payload else {
            return Ok(Decoded::Skipped(Skip::Tombstone));
        };
        let value = match route.format {
            ValueFormat::Avro => {
                let (id, body) = avro::split_wire(payload)?;
                let writer = match memo {
                    Some(w) if w.id == id => w,
                    _ => memo.insert(
                        self.registry
                            .schema(id)
                            .await
                            .map_err(|source| DecodeError::Registry { id, source })?,
                    ),
                };
                value::decode(body, &writer.schema, &writer.names, route.temporal)
                    .map_err(|source| DecodeError::Avro { id, source })?
            }
            ValueFormat::Json => {
                if payload.is_empty() {
                    return Ok(Decoded::Skipped(Skip::Tombstone));
                }
                let j: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| DecodeError::Json(e.to_string()))?;
                Value::from_json(&j)
            }
        };
        let mut decoded = envelope::apply(route.envelope, value, pos)?;
        if let (Some(field), Decoded::Change(ev)) = (&route.version_field, &mut decoded) {
            let v = ev
                .key_image()
                .and_then(|r| r.get(field))
                .and_then(|v| v.key_text())
                .ok_or_else(|| DecodeError::VersionField {
                    field: field.clone(),
                    detail: "missing or null in the row".into(),
                })?;
            ev.seq = Seq::from_digits(&v).map_err(|e| DecodeError::VersionField {
                field: field.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(decoded)
    }
}
