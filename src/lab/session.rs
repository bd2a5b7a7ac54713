//! `cdc-relay lab` as a whole: the lab (mock cluster, registry fixture, moto when it can be
//! found), its topics, the optional second region with the cluster link, and the control
//! endpoint; the JSON that describes it; and a shutdown that finishes within a deadline whatever
//! state the clusters are in (a dead cluster's clients can otherwise wait out long timeouts).
//!
//! Test and demo support only; nothing in the relay's run path uses it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::control::{self, Controlled};
use super::{Lab, LabError, LabOptions, SecondRegion, moto};

/// What `cdc-relay lab` starts.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub brokers: i32,
    /// `(topic, partitions)` to create (mirrored with `regions = 2`).
    pub topics: Vec<(String, i32)>,
    /// Start moto if a Python with moto can be found (`moto::locate`).
    pub moto: bool,
    /// 1, or 2 for a secondary cluster with mirror topics and the cluster link.
    pub regions: u8,
    pub mirror_prefix: String,
    /// Consumer groups whose offsets the link syncs.
    pub groups: Vec<String>,
}

/// A running lab with its control endpoint.
pub struct Session {
    controlled: Controlled,
    info: serde_json::Value,
    control_cancel: CancellationToken,
    /// What was found (or not) for moto, for the operator.
    pub moto_note: String,
}

impl Session {
    pub async fn start(opts: SessionOptions) -> Result<Session, LabError> {
        let (moto_wanted, moto_note) = if !opts.moto {
            (false, "moto: not started (--no-moto)".to_string())
        } else {
            match moto::locate() {
                Ok(p) => (
                    true,
                    format!("moto: {} (found by {})", p.path.display(), p.found_by),
                ),
                Err(why) => (false, format!("moto: not started: {why}")),
            }
        };
        let lab = Lab::start(LabOptions {
            brokers: opts.brokers,
            moto: moto_wanted,
            registry_auth: None,
        })
        .await?;
        for (t, n) in &opts.topics {
            lab.kafka.create_topic(t, *n)?;
        }
        let second = if opts.regions == 2 {
            Some(
                SecondRegion::start(
                    lab.kafka.bootstrap_servers(),
                    &lab.registry,
                    opts.brokers,
                    &opts.topics,
                    &opts.mirror_prefix,
                    &opts.groups,
                )
                .await?,
            )
        } else {
            None
        };
        let mut info =
            serde_json::to_value(lab.info(opts.topics.iter().map(|(t, _)| t.clone()).collect()))
                .unwrap_or_default();
        if let (Some(s), Some(obj)) = (&second, info.as_object_mut()) {
            obj.insert(
                "secondary".into(),
                serde_json::to_value(s.info(&opts.topics, &opts.groups)).unwrap_or_default(),
            );
        }
        let controlled = Controlled {
            lab: Arc::new(lab),
            second: second.map(Arc::new),
        };
        let control_cancel = CancellationToken::new();
        let addr = control::serve(controlled.clone(), control_cancel.clone()).await?;
        if let Some(obj) = info.as_object_mut() {
            obj.insert("control_url".into(), format!("http://{addr}").into());
            if let Some(m) = &controlled.lab.moto {
                obj.insert("moto_pid".into(), m.pid().into());
            }
        }
        Ok(Session {
            controlled,
            info,
            control_cancel,
            moto_note,
        })
    }

    /// Connection details: one JSON object (bootstrap servers, registry, AWS endpoint, topics,
    /// retention, the secondary region, `control_url`).
    pub fn info(&self) -> &serde_json::Value {
        &self.info
    }

    /// Stops everything. moto (the only child process) is killed at once; the in-process
    /// clusters, link and registries are closed on a helper thread, waited for at most
    /// `deadline`. Returns whether they closed in time; if not, the caller exits the process,
    /// which ends them.
    pub fn shutdown(self, deadline: Duration) -> bool {
        self.control_cancel.cancel();
        if let Some(m) = &self.controlled.lab.moto {
            m.terminate();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let controlled = self.controlled;
        let closing = std::thread::Builder::new()
            .name("lab-close".into())
            .spawn(move || {
                drop(controlled);
                let _ = tx.send(());
            });
        closing.is_ok() && rx.recv_timeout(deadline).is_ok()
    }
}
