//! The shared failover decision (DESIGN §6): one control record per consumer group in a DynamoDB
//! table (a global table in production): `{group, active_cluster, epoch, decided_by, decided_at,
//! reason}` plus the relay's offset checkpoint. A switch is a conditional update on the epoch the
//! proposer has seen, so of two pods proposing at once exactly one wins, and nobody can act on a
//! decision older than the epoch it has seen.
//!
//! Reads and writes the record only; it must not decide when to switch (the region-health actor
//! does) or move the consumer.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

/// The decision every pod of a group follows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControlRecord {
    pub group: String,
    /// `primary` or `secondary`.
    pub active_cluster: String,
    pub epoch: u64,
    pub decided_by: String,
    pub decided_at_ms: i64,
    pub reason: String,
    /// Last committed offsets by `topic/partition` (source topic names), and when.
    pub checkpoint: BTreeMap<String, i64>,
    /// Timestamp (ms) of the last processed record per `topic/partition`, for the timestamp
    /// start source when offsets do not carry over.
    pub checkpoint_ts: BTreeMap<String, i64>,
    pub checkpoint_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control table {table}: {error}")]
    Aws { table: String, error: String },
    #[error("control record of group {group} is malformed: {why}")]
    Malformed { group: String, why: String },
}

/// The result of a proposed switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// This proposal won; the record now has `epoch = seen + 1`.
    Won(ControlRecord),
    /// Someone else decided first: the current record.
    Lost(ControlRecord),
}

pub struct ControlTable {
    client: Client,
    table: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl ControlTable {
    pub fn new(client: Client, table: &str) -> Self {
        ControlTable {
            client,
            table: table.to_string(),
        }
    }

    fn aws(&self, e: impl std::error::Error + 'static) -> ControlError {
        ControlError::Aws {
            table: self.table.clone(),
            error: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
        }
    }

    fn parse(
        group: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<ControlRecord, ControlError> {
        let bad = |why: &str| ControlError::Malformed {
            group: group.to_string(),
            why: why.to_string(),
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        let numbers = |attr: &str| match item.get(attr) {
            Some(AttributeValue::M(m)) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(ControlRecord {
            group: group.to_string(),
            active_cluster: text("active_cluster").ok_or_else(|| bad("no active_cluster"))?,
            epoch: num("epoch")
                .and_then(|e| u64::try_from(e).ok())
                .ok_or_else(|| bad("no epoch"))?,
            decided_by: text("decided_by").unwrap_or_default(),
            decided_at_ms: num("decided_at").unwrap_or(0),
            reason: text("reason").unwrap_or_default(),
            checkpoint: numbers("checkpoint"),
            checkpoint_ts: numbers("checkpoint_ts"),
            checkpoint_at_ms: num("checkpoint_at"),
        })
    }

    /// The group's record, if any (strongly consistent).
    pub async fn read(&self, group: &str) -> Result<Option<ControlRecord>, ControlError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("group", s(group))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.aws(e))?;
        out.item().map(|i| Self::parse(group, i)).transpose()
    }

    /// The group's record, created at epoch 0 with `active` if there is none yet.
    pub async fn read_or_init(
        &self,
        group: &str,
        active: &str,
        by: &str,
    ) -> Result<ControlRecord, ControlError> {
        if let Some(r) = self.read(group).await? {
            return Ok(r);
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("group", s(group))
            .item("active_cluster", s(active))
            .item("epoch", n(0))
            .item("decided_by", s(by))
            .item("decided_at", n(now_ms()))
            .item("reason", s("initial"))
            .condition_expression("attribute_not_exists(#g)")
            .expression_attribute_names("#g", "group")
            .send()
            .await;
        if let Err(e) = put
            && !e
                .as_service_error()
                .is_some_and(|se| se.is_conditional_check_failed_exception())
        {
            return Err(self.aws(e));
        }
        self.read(group)
            .await?
            .ok_or_else(|| ControlError::Malformed {
                group: group.to_string(),
                why: "vanished right after creation".into(),
            })
    }

    /// Proposes `to` as the active cluster, based on the record at epoch `seen`.
    pub async fn switch(
        &self,
        group: &str,
        seen: u64,
        to: &str,
        by: &str,
        reason: &str,
    ) -> Result<Switch, ControlError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("group", s(group))
            .update_expression(
                "SET active_cluster = :to, epoch = :next, decided_by = :by, decided_at = :at, reason = :why",
            )
            .condition_expression("epoch = :seen")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":next", n(seen + 1))
            .expression_attribute_values(":seen", n(seen))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":at", n(now_ms()))
            .expression_attribute_values(":why", s(reason))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => {
                let item = out.attributes().cloned().unwrap_or_default();
                Ok(Switch::Won(Self::parse(group, &item)?))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let current = self
                    .read(group)
                    .await?
                    .ok_or_else(|| ControlError::Malformed {
                        group: group.to_string(),
                        why: "no record to switch".into(),
                    })?;
                Ok(Switch::Lost(current))
            }
            Err(e) => Err(self.aws(e)),
        }
    }

    /// Stores the committed offsets and last processed timestamps, only while the record is still at `epoch` (a pod that has
    /// not yet seen a switch cannot overwrite the new cluster's checkpoint). `Ok(false)` if the
    /// epoch moved on.
    pub async fn checkpoint(
        &self,
        group: &str,
        epoch: u64,
        offsets: &BTreeMap<String, i64>,
        timestamps: &BTreeMap<String, i64>,
    ) -> Result<bool, ControlError> {
        let map = |m: &BTreeMap<String, i64>| {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), n(v))).collect())
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("group", s(group))
            .update_expression("SET checkpoint = :cp, checkpoint_ts = :ts, checkpoint_at = :at")
            .condition_expression("epoch = :epoch")
            .expression_attribute_values(":cp", map(offsets))
            .expression_attribute_values(":ts", map(timestamps))
            .expression_attribute_values(":at", n(now_ms()))
            .expression_attribute_values(":epoch", n(epoch))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.aws(e)),
        }
    }
}
