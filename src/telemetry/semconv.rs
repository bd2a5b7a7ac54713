//! Every span and attribute name the relay exports, in one place, with the OpenTelemetry
//! semantic-conventions version they follow. The messaging conventions are still in development
//! and renames are announced (semconv 1.45: `messaging.system` → `messaging.system.name`,
//! `messaging.kafka.offset` → `kafka.offset`); when they land, this module is the only one to
//! change.
//!
//! Names only: no span is built here.

/// The semantic-conventions version these names follow.
pub const SEMCONV_VERSION: &str = "1.37.0";
/// The schema URL of that version, set on the relay's instrumentation scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";
/// The instrumentation scope of every span the relay makes.
pub const SCOPE: &str = "cdc-relay";

// Resource.
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const CLOUD_REGION: &str = "cloud.region";

// Messaging (Kafka): https://opentelemetry.io/docs/specs/semconv/messaging/kafka/
pub const MESSAGING_SYSTEM: &str = "messaging.system";
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
pub const MESSAGING_DESTINATION_PARTITION_ID: &str = "messaging.destination.partition.id";
pub const MESSAGING_CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";
pub const MESSAGING_KAFKA_OFFSET: &str = "messaging.kafka.offset";
pub const MESSAGING_KAFKA_MESSAGE_KEY: &str = "messaging.kafka.message.key";
/// Which of the two clusters the record came from (the configured cluster's name). Not (yet) a
/// registered attribute; named as the Kafka conventions would.
pub const MESSAGING_KAFKA_CLUSTER_ID: &str = "messaging.kafka.cluster.id";
pub const MESSAGING_BATCH_MESSAGE_COUNT: &str = "messaging.batch.message_count";
pub const MESSAGING_SYSTEM_KAFKA: &str = "kafka";
pub const MESSAGING_SYSTEM_AWS_SQS: &str = "aws_sqs";

// RPC and AWS: https://opentelemetry.io/docs/specs/semconv/cloud-providers/aws-sdk/
pub const RPC_SYSTEM: &str = "rpc.system";
pub const RPC_SYSTEM_AWS_API: &str = "aws-api";
pub const RPC_SERVICE: &str = "rpc.service";
pub const RPC_METHOD: &str = "rpc.method";

// Database (DynamoDB): https://opentelemetry.io/docs/specs/semconv/database/dynamodb/
pub const DB_SYSTEM_NAME: &str = "db.system.name";
pub const DB_SYSTEM_DYNAMODB: &str = "aws.dynamodb";
pub const AWS_DYNAMODB_TABLE_NAMES: &str = "aws.dynamodb.table_names";

// Errors.
pub const ERROR_TYPE: &str = "error.type";

// The relay's own attributes (namespaced, as the conventions ask of non-standard ones).
pub const RELAY_OUTPUT: &str = "cdc_relay.output";
pub const RELAY_OUTCOME: &str = "cdc_relay.outcome";
pub const RELAY_OP: &str = "cdc_relay.op";
pub const RELAY_REASON: &str = "cdc_relay.reason";
pub const RELAY_BATCH_LINKS: &str = "cdc_relay.batch.traced_records";

// Span names (DESIGN §7).
/// The Kafka record's span: `process <topic>` (messaging: `{operation} {destination}`).
pub const OP_PROCESS: &str = "process";
pub const SPAN_DECODE: &str = "decode";
pub const SPAN_ROUTE: &str = "route";
pub const SPAN_DLQ_SEND: &str = "dlq.send";

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";
