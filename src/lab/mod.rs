//! The local environment (`cdc-relay lab`, the demo and the tests): an in-process librdkafka mock
//! cluster on real TCP ports, the schema-registry fixture, and moto (AWS API server) if installed;
//! with `--regions 2` a second cluster and the cluster-link emulator; and the control endpoint
//! (`control.rs`) that drives faults from outside.
//!
//! Test and demo support only: nothing in the relay's run path uses it.

pub mod control;
pub mod kafka;
pub mod link;
pub mod moto;
pub mod registry_fixture;
pub mod session;

use serde::Serialize;

/// Connection details printed by `cdc-relay lab` (one JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    pub bootstrap_servers: String,
    pub brokers: i32,
    pub schema_registry_url: String,
    pub aws_endpoint_url: Option<String>,
    pub topics: Vec<String>,
    /// What each partition of the mock cluster keeps before it drops its oldest records.
    pub partition_retention: Retention,
}

/// The mock cluster's per-partition retention (see `kafka::PARTITION_RETENTION_BYTES`).
#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    pub bytes: u64,
    pub record_batches: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            bytes: kafka::PARTITION_RETENTION_BYTES,
            record_batches: kafka::PARTITION_RETENTION_BATCHES,
        }
    }
}

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use kafka::MockKafka;
use moto::Moto;
use registry_fixture::RegistryFixture;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Kafka(#[from] kafka::MockError),
    #[error(transparent)]
    Moto(#[from] moto::MotoError),
    #[error("lab server: {0}")]
    Io(#[from] std::io::Error),
    #[error("creating table {table}: {message}")]
    Table { table: String, message: String },
    #[error(transparent)]
    Link(#[from] link::LinkError),
}

/// A second region for the lab: another mock cluster, the mirror topics, and the cluster-link
/// emulator copying the primary's topics there (`cdc-relay lab --regions 2`, the failover demo).
pub struct SecondRegion {
    pub kafka: MockKafka,
    pub mirror_prefix: String,
    pub link: link::ClusterLink,
    /// The region's own schema registry, schema-linked to the primary's (same ids).
    pub registry: RegistryFixture,
}

/// Connection details of the second region (printed by `cdc-relay lab --regions 2`).
#[derive(Debug, Clone, Serialize)]
pub struct SecondRegionInfo {
    pub bootstrap_servers: String,
    pub schema_registry_url: String,
    pub mirror_prefix: String,
    pub mirror_topics: Vec<String>,
    pub synced_groups: Vec<String>,
}

impl SecondRegion {
    /// Starts the secondary cluster with `<prefix><topic>` for each `(topic, partitions)` on the
    /// primary at `primary`, and links them, syncing the offsets of `groups`; plus a schema
    /// registry linked to `primary_registry`.
    pub async fn start(
        primary: &str,
        primary_registry: &RegistryFixture,
        brokers: i32,
        topics: &[(String, i32)],
        prefix: &str,
        groups: &[String],
    ) -> Result<SecondRegion, LabError> {
        let kafka = MockKafka::start(brokers)?;
        for (t, n) in topics {
            kafka.create_topic(&format!("{prefix}{t}"), *n)?;
        }
        let link = link::ClusterLink::start(
            primary,
            kafka.bootstrap_servers(),
            link::LinkOptions {
                topics: topics.to_vec(),
                mirror_prefix: prefix.to_string(),
                groups: groups.to_vec(),
                sync_interval: Duration::from_millis(500),
                skip_first: 0,
            },
        )?;
        Ok(SecondRegion {
            kafka,
            mirror_prefix: prefix.to_string(),
            link,
            registry: primary_registry.start_linked(None).await?,
        })
    }

    pub fn info(&self, topics: &[(String, i32)], groups: &[String]) -> SecondRegionInfo {
        SecondRegionInfo {
            bootstrap_servers: self.kafka.bootstrap_servers().to_string(),
            schema_registry_url: self.registry.url(),
            mirror_prefix: self.mirror_prefix.clone(),
            mirror_topics: topics
                .iter()
                .map(|(t, _)| format!("{}{t}", self.mirror_prefix))
                .collect(),
            synced_groups: groups.to_vec(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub brokers: i32,
    /// Start moto (fails if it is not installed).
    pub moto: bool,
    /// Basic auth for the registry fixture.
    pub registry_auth: Option<(String, String)>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            brokers: 3,
            moto: true,
            registry_auth: None,
        }
    }
}

/// A running local environment. Everything stops when it is dropped.
pub struct Lab {
    pub kafka: MockKafka,
    pub registry: RegistryFixture,
    pub moto: Option<Moto>,
}

impl Lab {
    pub async fn start(opts: LabOptions) -> Result<Lab, LabError> {
        let kafka = MockKafka::start(opts.brokers)?;
        let registry = RegistryFixture::start(
            opts.registry_auth
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        )
        .await?;
        let moto = if opts.moto {
            Some(
                tokio::task::spawn_blocking(Moto::start)
                    .await
                    .map_err(|e| moto::MotoError::Start(e.to_string()))??,
            )
        } else {
            None
        };
        Ok(Lab {
            kafka,
            registry,
            moto,
        })
    }

    pub fn info(&self, topics: Vec<String>) -> LabInfo {
        LabInfo {
            bootstrap_servers: self.kafka.bootstrap_servers().to_string(),
            brokers: self.kafka.brokers(),
            schema_registry_url: self.registry.url(),
            aws_endpoint_url: self.moto.as_ref().map(|m| m.endpoint().to_string()),
            topics,
            partition_retention: Retention::default(),
        }
    }

    /// The `[aws]` settings pointing at moto.
    pub fn aws_config(&self) -> crate::config::AwsConfig {
        crate::config::AwsConfig {
            region: Some("us-west-2".into()),
            endpoint_url: self.moto.as_ref().map(|m| m.endpoint().to_string()),
        }
    }

    /// An SDK config for moto (dummy credentials, us-west-2), for the clients that check what the
    /// relay did (tests, the demo's verification): a 30 s attempt timeout, since a moto on a
    /// loaded 2-core machine has taken over 10 s to answer one scan page. The relay's own clients
    /// are built from its config, not here.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::sinks::aws::sdk_config(&self.aws_config(), Duration::from_secs(30)).await
    }
}

/// Creates a DynamoDB table keyed by a string partition key `pk_attribute` (on-demand billing).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk_attribute: &str,
) -> Result<(), LabError> {
    let err = |e: String| LabError::Table {
        table: table.to_string(),
        message: e,
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(pk_attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(pk_attribute)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
    Ok(())
}
