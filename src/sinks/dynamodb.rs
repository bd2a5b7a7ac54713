//! DynamoDB sink, conditional mode (DESIGN §3.2): one conditional PutItem / DeleteItem per record,
//! guarded by `attribute_not_exists(pk) OR _seq < :seq`. ConditionalCheckFailed means stale.
//!
//! One attempt per call and an error class per DESIGN §4; retries belong to the pool.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{Sink, SinkError, SinkResult};
use crate::error_class::ErrorClass;
use crate::event::Value;
use crate::route::{ATTR_SEQ, WriteKind, WriteRequest};

/// The version guard: the item is new, or the stored `_seq` is older than this write's.
pub const CONDITION: &str = "attribute_not_exists(#pk) OR #seq < :seq";

pub struct DynamoDbSink {
    client: Client,
    name: String,
}

impl DynamoDbSink {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        DynamoDbSink {
            client: Client::new(sdk),
            name: "dynamodb".into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
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

/// DynamoDB attribute value → `event::Value` (for verification tools and tests).
pub fn from_attr(a: &AttributeValue) -> Value {
    match a {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => Value::Number(n.clone()),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::B(b) => Value::Bytes(b.as_ref().to_vec()),
        AttributeValue::L(l) => Value::List(l.iter().map(from_attr).collect()),
        AttributeValue::M(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect())
        }
        AttributeValue::Ss(s) => Value::List(s.iter().map(|x| Value::String(x.clone())).collect()),
        AttributeValue::Ns(s) => Value::List(s.iter().map(|x| Value::Number(x.clone())).collect()),
        AttributeValue::Bs(s) => Value::List(
            s.iter()
                .map(|x| Value::Bytes(x.as_ref().to_vec()))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Classifies an SDK error per DESIGN §4. `Ok(Stale)` for a failed version guard.
pub fn classify<E>(sink: &str, err: &SdkError<E, HttpResponse>) -> SinkResult
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failed = |class: ErrorClass, reason: &'static str, message: String| {
        SinkResult::Failed(SinkError {
            class,
            reason,
            sink: sink.to_string(),
            message,
        })
    };
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let msg = format!("{code}: {}", e.message().unwrap_or(""));
            match code {
                "ConditionalCheckFailedException" => SinkResult::Stale,
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionConflictException"
                | "LimitExceededException" => {
                    failed(ErrorClass::Retryable, "throttled_or_unavailable", msg)
                }
                "ResourceNotFoundException"
                | "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "MissingAuthenticationTokenException"
                | "ExpiredTokenException" => {
                    failed(ErrorClass::Misconfiguration, "misconfigured", msg)
                }
                // DynamoDB reports an oversize item as "Item size has exceeded the maximum allowed size".
                "ValidationException" if msg.contains("Item size") => {
                    failed(ErrorClass::Poison, "item_too_large", msg)
                }
                "ValidationException" => failed(ErrorClass::Poison, "sink_rejected", msg),
                "ItemCollectionSizeLimitExceededException" => {
                    failed(ErrorClass::Poison, "item_collection_too_large", msg)
                }
                _ => {
                    if se.raw().status().is_server_error() {
                        failed(ErrorClass::Retryable, "server_error", msg)
                    } else {
                        failed(ErrorClass::Misconfiguration, "unexpected_client_error", msg)
                    }
                }
            }
        }
        // Timeouts, dispatch failures (connection refused), unparseable responses: transient.
        other => failed(
            ErrorClass::Retryable,
            "transport",
            aws_sdk_dynamodb::error::DisplayErrorContext(other).to_string(),
        ),
    }
}

#[async_trait::async_trait]
impl Sink for DynamoDbSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, req: &WriteRequest) -> SinkResult {
        let names = HashMap::from([
            ("#pk".to_string(), req.pk_attribute.to_string()),
            ("#seq".to_string(), ATTR_SEQ.to_string()),
        ]);
        let values = HashMap::from([(
            ":seq".to_string(),
            AttributeValue::S(req.seq.as_str().to_string()),
        )]);
        let sink = format!("dynamodb:{}", req.table);
        match &req.kind {
            WriteKind::Put(item) => {
                let item: HashMap<String, AttributeValue> =
                    item.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect();
                match self
                    .client
                    .put_item()
                    .table_name(req.table.as_ref())
                    .set_item(Some(item))
                    .condition_expression(CONDITION)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await
                {
                    Ok(_) => SinkResult::Done,
                    Err(e) => classify(&sink, &e),
                }
            }
            WriteKind::Delete => {
                match self
                    .client
                    .delete_item()
                    .table_name(req.table.as_ref())
                    .key(req.pk_attribute.as_ref(), AttributeValue::S(req.pk.clone()))
                    .condition_expression(CONDITION)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await
                {
                    Ok(_) => SinkResult::Done,
                    Err(e) => classify(&sink, &e),
                }
            }
        }
    }
}
