//! **Test support**: two regions for the multi-region tests — a scenario on the primary (the
//! lab's cluster), a secondary cluster with its mirror topic, the cluster-link emulator between
//! them, a schema-linked registry per region, a control table, and the relay config for both.

use std::time::Duration;

use cdc_relay::config::{EnvelopeKind, FailoverConfig, RegionConfig, RegionsConfig};
use cdc_relay::lab::kafka::MockKafka;
use cdc_relay::lab::link::{ClusterLink, LinkOptions};
use cdc_relay::lab::registry_fixture::RegistryFixture;

use super::{Env, PARTITIONS, Plan};

/// Mirror topics on the secondary are `primary.<topic>`.
pub const PREFIX: &str = "primary.";

pub struct Regions {
    pub env: Env,
    pub s: super::Scenario,
    pub secondary: MockKafka,
    pub mirror: String,
    pub link: ClusterLink,
    /// Each region's schema registry (schema-linked: same ids). `[schema_registry]` has no URL,
    /// so the relay decodes with the active region's registry.
    pub registries: (RegistryFixture, RegistryFixture),
}

/// A scenario on the primary (the lab's cluster), a secondary cluster with the mirror topic, the
/// link between them, a registry per region, a control table, and the relay config for both
/// regions.
pub async fn regions(name: &'static str, seed: u64) -> Regions {
    regions_linked(name, seed, |_| {}).await
}

pub async fn regions_linked(
    name: &'static str,
    seed: u64,
    tweak: impl FnOnce(&mut LinkOptions),
) -> Regions {
    regions_sized(name, seed, 6_000, tweak).await
}

/// As `regions_linked`, with a first part of `records` records (300 keys).
pub async fn regions_sized(
    name: &'static str,
    seed: u64,
    records: u64,
    tweak: impl FnOnce(&mut LinkOptions),
) -> Regions {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new(name, EnvelopeKind::Qlik, 300, records, seed))
        .await;
    let secondary = MockKafka::start(3).unwrap();
    let mirror = format!("{PREFIX}{}", s.topic);
    secondary.create_topic(&mirror, PARTITIONS).unwrap();
    let mut opts = LinkOptions {
        topics: vec![(s.topic.clone(), PARTITIONS)],
        mirror_prefix: PREFIX.into(),
        groups: vec![s.group.clone()],
        sync_interval: Duration::from_millis(500),
        skip_first: 0,
    };
    tweak(&mut opts);
    let link = ClusterLink::start(&env.bootstrap(), secondary.bootstrap_servers(), opts).unwrap();
    let registries = (
        env.lab.registry.start_linked(None).await.unwrap(),
        env.lab.registry.start_linked(None).await.unwrap(),
    );
    let regional = |url: String| cdc_relay::config::RegionRegistry {
        url: Some(url),
        ..Default::default()
    };
    s.cfg.schema_registry.url = None;
    cdc_relay::lab::create_table(&env.ddb, &format!("control-{name}"), "group")
        .await
        .unwrap();
    s.cfg.kafka.bootstrap_servers = String::new();
    s.cfg.regions = Some(RegionsConfig {
        primary: RegionConfig {
            name: "us-west-2".into(),
            bootstrap_servers: env.bootstrap(),
            properties: Default::default(),
            properties_file: None,
            topic_prefix: String::new(),
            schema_registry: regional(registries.0.url()),
        },
        secondary: RegionConfig {
            name: "us-east-1".into(),
            bootstrap_servers: secondary.bootstrap_servers().to_string(),
            properties: Default::default(),
            properties_file: None,
            topic_prefix: PREFIX.into(),
            schema_registry: regional(registries.1.url()),
        },
    });
    s.cfg.failover = FailoverConfig {
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_millis(500),
        unhealthy_after: Duration::from_secs(2),
        control_table: Some(format!("control-{name}")),
        checkpoint_interval: Duration::from_secs(1),
        ..Default::default()
    };
    // Global tables: one write region for the group (moto serves every region).
    s.cfg.dynamodb.write_region = Some("us-west-2".into());
    assert!(s.cfg.validate().is_empty(), "{:?}", s.cfg.validate());

    Regions {
        env,
        s,
        secondary,
        mirror,
        link,
        registries,
    }
}
