//! DynamoDB sink for one table, in the route's write mode (DESIGN §3.2, §3.3):
//! `conditional` — one PutItem / DeleteItem per record guarded by
//! `attribute_not_exists(pk) OR _seq < :seq` (ConditionalCheckFailed means stale), sent by
//! `dynamodb_wire` (the SDK when no wire client could be built);
//! `transact` — TransactWriteItems of up to 100 distinct keys with the same guard (on
//! TransactionCanceled, items whose guard failed are stale and the others are retried);
//! `batch` — BatchWriteItem of up to 25 unguarded writes (UnprocessedItems are retried).
//!
//! One attempt per call and an error class per DESIGN §4; retries belong to the pool.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, PutRequest, TransactWriteItem,
    WriteRequest as DdbWrite,
};

use super::aws::classify;
use super::dynamodb_wire::{WireClient, WireError};
use super::{BatchLimits, Sink, SinkError, SinkResult};
use crate::config::WriteMode;
use crate::error_class::ErrorClass;
use crate::event::Value;
use crate::route::{ATTR_SEQ, WriteKind, WriteRequest};

pub use super::dynamodb_wire::CONDITION;
use crate::telemetry::semconv as sc;

pub struct DynamoDbSink {
    client: Client,
    /// `conditional` writes go through DynamoDB's JSON protocol directly when set.
    wire: Option<Arc<WireClient>>,
    table: String,
    mode: WriteMode,
    name: String,
}

impl DynamoDbSink {
    pub fn new(client: Client, table: &str, mode: WriteMode) -> Self {
        DynamoDbSink {
            client,
            wire: None,
            table: table.to_string(),
            mode,
            name: format!("dynamodb:{table}"),
        }
    }

    /// Sends `conditional` writes with `wire` instead of the SDK (the other modes keep the SDK).
    pub fn with_wire(mut self, wire: Arc<WireClient>) -> Self {
        self.wire = Some(wire);
        self
    }

    /// A batch of `conditional` writes over the wire client: one identity, one request each.
    async fn conditional_wire(
        &self,
        wire: &WireClient,
        batch: &[Arc<WriteRequest>],
    ) -> Vec<SinkResult> {
        let identity = match wire.identity().await {
            Ok(id) => id,
            Err(e) => return vec![self.wire_failed(e); batch.len()],
        };
        futures::future::join_all(batch.iter().map(|r| async {
            match wire.conditional(&identity, &self.table, r).await {
                Ok(()) => SinkResult::Done,
                Err(e) => self.wire_failed(e),
            }
        }))
        .await
    }

    fn wire_failed(&self, e: WireError) -> SinkResult {
        match e {
            WireError::Service {
                status,
                code,
                message,
            } => {
                let msg = format!("{code}: {message}");
                super::aws::classify_code(&self.name, &code, msg, status >= 500)
            }
            WireError::Transport(m) => self.failed(ErrorClass::Retryable, "transport", m),
            WireError::Credentials(m) => self.failed(ErrorClass::Retryable, "credentials", m),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn names(req: &WriteRequest) -> HashMap<String, String> {
        HashMap::from([
            ("#pk".to_string(), req.pk_attribute.to_string()),
            ("#seq".to_string(), ATTR_SEQ.to_string()),
        ])
    }

    fn values(req: &WriteRequest) -> HashMap<String, AttributeValue> {
        HashMap::from([(
            ":seq".to_string(),
            AttributeValue::S(req.seq.as_str().to_string()),
        )])
    }

    fn item(item: &std::collections::BTreeMap<String, Value>) -> HashMap<String, AttributeValue> {
        item.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()
    }

    fn key(req: &WriteRequest) -> HashMap<String, AttributeValue> {
        HashMap::from([(
            req.pk_attribute.to_string(),
            AttributeValue::S(req.pk.clone()),
        )])
    }

    fn failed(&self, class: ErrorClass, reason: &'static str, message: String) -> SinkResult {
        SinkError::result(&self.name, class, reason, message)
    }

    /// Every request of a batch the SDK would not even build: rejected as poison.
    fn rejected(&self, n: usize, e: &dyn std::fmt::Display) -> Vec<SinkResult> {
        vec![self.failed(ErrorClass::Poison, "sink_rejected", e.to_string()); n]
    }

    async fn conditional(&self, req: &WriteRequest) -> SinkResult {
        let r = match &req.kind {
            WriteKind::Put(item) => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::item(item)))
                .condition_expression(CONDITION)
                .set_expression_attribute_names(Some(Self::names(req)))
                .set_expression_attribute_values(Some(Self::values(req)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&self.name, &e)),
            WriteKind::Delete => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(req)))
                .condition_expression(CONDITION)
                .set_expression_attribute_names(Some(Self::names(req)))
                .set_expression_attribute_values(Some(Self::values(req)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&self.name, &e)),
        };
        r.map_or_else(|res| res, |()| SinkResult::Done)
    }

    async fn transact(&self, batch: &[Arc<WriteRequest>]) -> Vec<SinkResult> {
        let built = batch.iter().map(|req| match &req.kind {
            WriteKind::Put(item) => Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::item(item)))
                .condition_expression(CONDITION)
                .set_expression_attribute_names(Some(Self::names(req)))
                .set_expression_attribute_values(Some(Self::values(req)))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build()),
            WriteKind::Delete => Delete::builder()
                .table_name(&self.table)
                .set_key(Some(Self::key(req)))
                .condition_expression(CONDITION)
                .set_expression_attribute_names(Some(Self::names(req)))
                .set_expression_attribute_values(Some(Self::values(req)))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build()),
        });
        let items = match built.collect::<Result<Vec<_>, _>>() {
            Ok(items) => items,
            Err(e) => return self.rejected(batch.len(), &e),
        };
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => vec![SinkResult::Done; batch.len()],
            Err(e) => {
                let reasons = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(tce)) => {
                        Some(tce.cancellation_reasons().to_vec())
                    }
                    _ => None,
                };
                match reasons {
                    Some(reasons) if reasons.len() == batch.len() => reasons
                        .iter()
                        .map(|r| self.cancellation(r.code(), r.message()))
                        .collect(),
                    _ => vec![classify(&self.name, &e); batch.len()],
                }
            }
        }
    }

    /// One item's part in a cancelled transaction.
    fn cancellation(&self, code: Option<&str>, message: Option<&str>) -> SinkResult {
        let msg = format!(
            "transaction cancelled: {}: {}",
            code.unwrap_or("None"),
            message.unwrap_or("")
        );
        match code.unwrap_or("None") {
            "ConditionalCheckFailed" => SinkResult::Stale,
            // This item was fine; another one cancelled the transaction.
            "None" => self.failed(ErrorClass::Retryable, "transaction_retry", msg),
            "ValidationError" if msg.contains("Item size") => {
                self.failed(ErrorClass::Poison, "item_too_large", msg)
            }
            "ValidationError" => self.failed(ErrorClass::Poison, "sink_rejected", msg),
            "ItemCollectionSizeLimitExceeded" => {
                self.failed(ErrorClass::Poison, "item_collection_too_large", msg)
            }
            "TransactionConflict" => self.failed(ErrorClass::Retryable, "transaction_retry", msg),
            _ => self.failed(ErrorClass::Retryable, "throttled_or_unavailable", msg),
        }
    }

    async fn batch(&self, batch: &[Arc<WriteRequest>]) -> Vec<SinkResult> {
        let built = batch.iter().map(|req| match &req.kind {
            WriteKind::Put(item) => PutRequest::builder()
                .set_item(Some(Self::item(item)))
                .build()
                .map(|p| DdbWrite::builder().put_request(p).build()),
            WriteKind::Delete => DeleteRequest::builder()
                .set_key(Some(Self::key(req)))
                .build()
                .map(|d| DdbWrite::builder().delete_request(d).build()),
        });
        let writes = match built.collect::<Result<Vec<_>, _>>() {
            Ok(writes) => writes,
            Err(e) => return self.rejected(batch.len(), &e),
        };
        match self
            .client
            .batch_write_item()
            .request_items(&self.table, writes)
            .send()
            .await
        {
            Ok(out) => {
                let unprocessed: std::collections::HashSet<String> = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .map(|ws| {
                        ws.iter()
                            .filter_map(|w| {
                                let attrs = w
                                    .put_request()
                                    .map(|p| p.item())
                                    .or_else(|| w.delete_request().map(|d| d.key()))?;
                                batch.first().and_then(|r| {
                                    attrs.get(r.pk_attribute.as_ref())?.as_s().ok().cloned()
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                batch
                    .iter()
                    .map(|r| {
                        if unprocessed.contains(&r.pk) {
                            self.failed(
                                ErrorClass::Retryable,
                                "unprocessed",
                                "returned in UnprocessedItems".into(),
                            )
                        } else {
                            SinkResult::Done
                        }
                    })
                    .collect()
            }
            Err(e) => vec![classify(&self.name, &e); batch.len()],
        }
    }
}

#[async_trait::async_trait]
impl Sink<WriteRequest> for DynamoDbSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        match self.mode {
            // One request per call; up to 16 of them share a worker task.
            WriteMode::Conditional => BatchLimits {
                max_count: 16,
                max_bytes: usize::MAX,
                per_request: true,
            },
            // DynamoDB: 100 actions and 4 MB per transaction; 25 requests and 16 MB per batch.
            WriteMode::Transact => BatchLimits {
                max_count: 100,
                max_bytes: 4 * 1024 * 1024,
                per_request: false,
            },
            WriteMode::Batch => BatchLimits {
                max_count: 25,
                max_bytes: 16 * 1024 * 1024,
                per_request: false,
            },
        }
    }

    fn call(&self, req: Option<&WriteRequest>) -> super::CallSpan {
        let method = match (self.mode, req.map(|r| &r.kind)) {
            (WriteMode::Conditional, Some(crate::route::WriteKind::Delete)) => "DeleteItem",
            (WriteMode::Conditional, _) => "PutItem",
            (WriteMode::Transact, _) => "TransactWriteItems",
            (WriteMode::Batch, _) => "BatchWriteItem",
        };
        let mut attrs = crate::telemetry::trace::aws_call("DynamoDB", method);
        attrs.push(opentelemetry::KeyValue::new(
            sc::DB_SYSTEM_NAME,
            sc::DB_SYSTEM_DYNAMODB,
        ));
        attrs.push(opentelemetry::KeyValue::new(
            sc::AWS_DYNAMODB_TABLE_NAMES,
            opentelemetry::Value::Array(
                vec![opentelemetry::StringValue::from(self.table.clone())].into(),
            ),
        ));
        super::CallSpan {
            name: format!("DynamoDB.{method}").into(),
            attrs,
        }
    }

    async fn write_batch(&self, batch: &[Arc<WriteRequest>]) -> Vec<SinkResult> {
        match self.mode {
            WriteMode::Conditional => match &self.wire {
                Some(wire) => self.conditional_wire(wire, batch).await,
                None => futures::future::join_all(batch.iter().map(|r| self.conditional(r))).await,
            },
            WriteMode::Transact => self.transact(batch).await,
            WriteMode::Batch => self.batch(batch).await,
        }
    }
}

/// `event::Value` → DynamoDB attribute value (DESIGN §5).
pub fn to_attr(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.clone()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Bytes(b) => AttributeValue::B(Blob::new(b.clone())),
        Value::List(l) => AttributeValue::L(l.iter().map(to_attr).collect()),
        Value::Map(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

/// The DynamoDB output of a route with `table`: its table's pool (one per table, in the write
/// mode of the routes writing there), required, with the `State` role.
pub fn output_for(
    route: &crate::config::RouteConfig,
    w: &mut super::wiring::Wiring<'_>,
) -> Option<Arc<dyn super::output::Output>> {
    let table = route.table.clone()?;
    let cfg = &w.config.dynamodb;
    let sdk = &super::aws::dynamodb_sdk(w.sdk, cfg);
    let timeout = cfg.request_timeout;
    let client = w.shared("client:dynamodb", || {
        Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .timeout_config(super::aws::timeouts(timeout))
                .build(),
        )
    });
    let name = format!("dynamodb:{table}");
    let settings =
        super::pool::PoolSettings::of(cfg.concurrency, cfg.linger, &cfg.retry, &cfg.breaker);
    let mode = route.write_mode;
    // Conditional writes (one request per version) skip the SDK's per-request orchestration.
    let wire = match mode {
        WriteMode::Conditional => w.shared("wire:dynamodb", || {
            WireClient::new(sdk, timeout)
                .map(Arc::new)
                .map_err(|e| {
                    tracing::warn!(error = %e, "DynamoDB wire client unavailable; conditional writes use the SDK");
                })
                .ok()
        }),
        _ => None,
    };
    let pool = w.pool(&name, || {
        let sink = DynamoDbSink::new(client, &table, mode);
        let sink = match wire {
            Some(wire) => sink.with_wire(wire),
            None => sink,
        };
        super::pool::PoolHandle::new(Arc::new(sink), settings)
    });
    let r = crate::route::Route::new(route.clone());
    let max = cfg.max_item_bytes;
    Some(Arc::new(super::output::PooledOutput {
        span_name: "dynamodb.write",
        pool,
        role: super::output::Role::State,
        required: true,
        reason_prefix: "",
        build: Box::new(move |c| {
            r.build_keyed(c.event, c.key.to_string(), c.kafka_ts_ms, max)
                .map_err(|e| super::output::Failure {
                    class: e.class(),
                    reason: e.reason().into(),
                    error: e.to_string(),
                })
        }),
        describe: Some(WriteRequest::to_json),
    }))
}
