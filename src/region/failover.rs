//! The region-health actor (DESIGN §2, §6): every `probe_interval` it probes both clusters
//! (metadata within `probe_timeout`, watermarks of every mirrored partition), feeds the health
//! state machines, exports link lag and region metrics, reads the shared control record, asks
//! `decide` what to do and carries it out: follow the record, propose a switch, fail back; it
//! writes offset checkpoints and executes switches: stop the consumer (without committing to a
//! dead cluster), resolve each partition's start offset on the target (`start.rs`), and restart
//! the consumer there, which commits those start positions once assigned. It reports each switch
//! (`/status` `last_switch`, `cdc_relay_failover_duration_seconds`) from the first failed probe
//! (or the request) to that assignment, and the time to the first record done on the target.
//!
//! It must not decide in code of its own (that is `decide.rs`), process records or commit offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use super::Active;
use super::control::{ControlRecord, ControlTable, Switch};
use super::decide::{Action, Inputs, Shared, decide};
use super::health::{Health, HealthConfig, HealthMachine};
use super::lag::{Cluster, LagProbe, PartitionLag};
use super::start::{Progress, StartOffset, caught_up, committed_on, resolve_start};
use crate::config::{ClusterConfig, Config, Side};
use crate::kafka::consumer::{self, ConsumerMsg};
use crate::status::StatusBoard;
use crate::supervision::SupervisorMsg;

/// What one probe round found (measured off the async runtime).
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub primary_up: bool,
    pub secondary_up: bool,
    pub lags: Vec<PartitionLag>,
}

pub enum FailoverMsg {
    Tick,
    Probed(ProbeResult),
    /// Planned failover (`to = secondary`) or failback (`to = primary`) from the admin API:
    /// drain and commit, wait for the target to catch up, bump the epoch, switch. Replies with
    /// a JSON report or an error text.
    Planned {
        to: Side,
        reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>,
    },
}

pub struct FailoverArgs {
    pub config: Arc<Config>,
    pub active: Arc<Active>,
    pub status: Arc<StatusBoard>,
    pub control: Option<Arc<ControlTable>>,
    /// The running consumer actor (to stop it for a switch).
    pub consumer: Arc<std::sync::Mutex<Option<ActorRef<ConsumerMsg>>>>,
    /// This pod's identity in the control record.
    pub pod: String,
}

/// A switch in progress or done, for `/status` and the duration metric.
#[derive(Debug, Clone, serde::Serialize)]
struct SwitchInfo {
    from: Side,
    to: Side,
    epoch: u64,
    reason: String,
    offset_sources: BTreeMap<String, usize>,
    /// Explicit start offsets by `topic/partition` on the target (partitions starting at the
    /// group's committed offset there are not listed); committed there once assigned.
    start_offsets: BTreeMap<String, i64>,
    /// The switch itself: seconds from the first failed probe (or the switch request) until the
    /// consumer was assigned on the target with its start positions committed.
    duration_seconds: Option<f64>,
    /// Seconds from the same start to the first record completed on the target (none while the
    /// target has nothing new to process).
    first_record_seconds: Option<f64>,
    #[serde(skip)]
    started: Instant,
    /// When the consumer was asked to start on the target.
    #[serde(skip)]
    restarted: std::time::Instant,
    #[serde(skip)]
    completed_before: u64,
}

pub struct FailoverState {
    args: FailoverArgs,
    probe: Option<Arc<LagProbe>>,
    probing: bool,
    primary: HealthMachine,
    secondary: HealthMachine,
    /// The highest control-record epoch seen; decisions older than it are ignored.
    epoch: u64,
    /// Since when the primary's probes fail (for the failover duration).
    failing_since: Option<Instant>,
    last_checkpoint: Instant,
    /// Last committed offset and last processed record timestamp per `topic/partition`
    /// (source names).
    progress: Progress,
    lags: Vec<PartitionLag>,
    last_switch: Option<SwitchInfo>,
    /// Set by an unplanned failover: with `failback = automatic`, go back once the primary has
    /// been healthy for `failback_after`.
    failback_armed: bool,
}

pub struct FailoverActor;

fn cluster(c: &ClusterConfig) -> Cluster {
    Cluster {
        name: c.name.clone(),
        bootstrap_servers: c.bootstrap_servers.clone(),
        properties: c.properties.clone(),
    }
}

fn completed(status: &StatusBoard) -> u64 {
    let o = &status.outcomes;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    g(&o.written) + g(&o.stale) + g(&o.superseded) + g(&o.skipped) + g(&o.dead_lettered)
}

impl FailoverState {
    fn cfg(&self) -> &Config {
        &self.args.config
    }

    fn publish(&self) {
        let active = self.args.active.side();
        let c = self.cfg();
        let (p, s) = (c.cluster(Side::Primary), c.cluster(Side::Secondary));
        for (side, cl, h) in [
            (Side::Primary, &p, self.primary.state()),
            (Side::Secondary, &s, self.secondary.state()),
        ] {
            metrics::gauge!("cdc_relay_region_up", "region" => cl.name.clone()).set(if h.is_up() {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("cdc_relay_region_active", "region" => cl.name.clone())
                .set(if side == active { 1.0 } else { 0.0 });
        }
        metrics::gauge!("cdc_relay_failover_epoch").set(self.epoch as f64);
        for l in &self.lags {
            let labels = [
                ("topic", l.topic.clone()),
                ("partition", l.partition.to_string()),
            ];
            metrics::gauge!("cdc_relay_link_lag_messages", &labels).set(l.messages as f64);
            metrics::gauge!("cdc_relay_link_lag_seconds", &labels).set(l.seconds);
        }
        self.args.status.set_region(serde_json::json!({
            "active": active,
            "active_region": c.cluster(active).name,
            "epoch": self.epoch,
            "mode": c.failover.mode,
            "primary": {"region": p.name, "health": self.primary.state().as_str()},
            "secondary": {"region": s.name, "health": self.secondary.state().as_str()},
            "link_lag": self.lags,
            "last_switch": self.last_switch,
        }));
    }

    /// Processed offsets and timestamps of the active cluster's partitions, by source
    /// `topic/partition`.
    fn collect_progress(&mut self) {
        let prefix = self.cfg().cluster(self.args.active.side()).topic_prefix;
        for p in self.args.status.partitions() {
            let topic = p.topic.strip_prefix(prefix.as_str()).unwrap_or(&p.topic);
            let key = format!("{topic}/{}", p.partition);
            // Processed, not merely committed: every record below it is done in every required
            // sink, so it is as safe a start and further ahead (async commit results are not
            // reported back by the client, so `committed()` would lag anyway).
            if let Some(c) = p.committable().or(p.committed()) {
                self.progress.offsets.insert(key.clone(), c);
            }
            if let Some(ts) = p.processed_ts() {
                self.progress.timestamps.insert(key, ts);
            }
        }
    }

    async fn on_probe(&mut self, myself: &ActorRef<FailoverMsg>, r: ProbeResult) {
        let now = Instant::now();
        self.probing = false;
        if !r.primary_up && self.failing_since.is_none() {
            self.failing_since = Some(now);
        } else if r.primary_up && matches!(self.primary.state(), Health::Healthy) {
            self.failing_since = None;
        }
        for (m, up, name) in [
            (&mut self.primary, r.primary_up, "primary"),
            (&mut self.secondary, r.secondary_up, "secondary"),
        ] {
            if let Some(h) = m.observe(up, now) {
                tracing::warn!(
                    cluster = name,
                    health = h.as_str(),
                    "cluster health changed"
                );
            }
        }
        if !r.lags.is_empty() {
            self.lags = r.lags;
        }
        self.collect_progress();
        self.measure_switch();
        self.follow_and_decide(myself).await;
        self.checkpoint().await;
        self.publish();
    }

    /// Completes the last switch's figures: the switch once the consumer was assigned on the
    /// target (start positions committed), and the first record done there.
    fn measure_switch(&mut self) {
        let done = completed(&self.args.status);
        let assigned = self.args.status.assigned_at();
        let Some(sw) = &mut self.last_switch else {
            return;
        };
        let started = sw.started.into_std();
        if sw.duration_seconds.is_none()
            && let Some(at) = assigned.filter(|at| *at >= sw.restarted)
        {
            let d = at.saturating_duration_since(started).as_secs_f64();
            sw.duration_seconds = Some(d);
            metrics::gauge!("cdc_relay_failover_duration_seconds").set(d);
            tracing::warn!(
                seconds = d,
                to = sw.to.as_str(),
                "switch complete: consumer assigned on the new cluster, start positions committed"
            );
        }
        if sw.first_record_seconds.is_none() && done > sw.completed_before {
            let d = started.elapsed().as_secs_f64();
            sw.first_record_seconds = Some(d);
            metrics::gauge!("cdc_relay_failover_first_record_seconds").set(d);
            tracing::warn!(
                seconds = d,
                to = sw.to.as_str(),
                "first record done on the new cluster"
            );
        }
    }

    async fn follow_and_decide(&mut self, myself: &ActorRef<FailoverMsg>) {
        let group = self.cfg().kafka.group_id.clone();
        let control = self.args.control.clone();
        let record = match &control {
            None => None,
            Some(c) => match c
                .read_or_init(&group, Side::Primary.as_str(), &self.args.pod)
                .await
            {
                Ok(r) => Some(Ok(r)),
                Err(e) => Some(Err(e)),
            },
        };
        let shared = match &record {
            None => Shared::NotConfigured,
            Some(Ok(r)) => Shared::Record(r),
            Some(Err(_)) => Shared::Unreachable,
        };
        match &record {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "control table unreachable; staying on the current cluster");
                self.args
                    .status
                    .set_region_problem(Some(format!("control table unreachable: {e}")));
            }
            _ => self.args.status.set_region_problem(None),
        }
        if let Some(Ok(r)) = &record {
            self.adopt(r);
        }
        let f = &self.cfg().failover;
        let action = decide(&Inputs {
            primary: self.primary.state(),
            secondary: self.secondary.state(),
            active: self.args.active.side(),
            epoch: self.epoch,
            mode: f.mode,
            allow_local_decision: f.allow_local_decision,
            failback: f.failback,
            failback_armed: self.failback_armed,
            shared,
        });
        match action {
            Action::Stay => {}
            Action::SwitchLocally { to, bump_epoch } => {
                if bump_epoch {
                    self.epoch += 1;
                }
                let why = if bump_epoch {
                    "primary down (local decision)"
                } else {
                    "primary down (local decision, control table unreachable)"
                };
                self.switch(myself, to, why.into()).await;
            }
            Action::Follow { to, epoch } => {
                let reason = match &record {
                    Some(Ok(r)) => format!("epoch {epoch} by {}: {}", r.decided_by, r.reason),
                    _ => format!("epoch {epoch}"),
                };
                self.switch(myself, to, reason).await;
            }
            Action::Failback => {
                self.failback_armed = false;
                match self.planned(myself, Side::Primary).await {
                    Ok(r) => tracing::warn!(report = %r, "automatic failback done"),
                    Err(e) => tracing::warn!(error = %e, "automatic failback not done"),
                }
            }
            Action::Propose { to, seen } => {
                let Some(control) = control else {
                    return;
                };
                let reason = "primary down".to_string();
                match control
                    .switch(&group, seen, to.as_str(), &self.args.pod, &reason)
                    .await
                {
                    Ok(Switch::Won(r)) => {
                        tracing::warn!(
                            epoch = r.epoch,
                            to = to.as_str(),
                            "this pod decided the failover"
                        );
                        self.follow(myself, &r).await;
                    }
                    Ok(Switch::Lost(r)) => self.follow(myself, &r).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot propose the failover; retrying next probe")
                    }
                }
            }
        }
    }

    /// Takes in a control record not older than what this pod has seen: its epoch, and the
    /// other pods' progress (the furthest wins, so no pod's checkpoint moves a partition back).
    fn adopt(&mut self, r: &ControlRecord) {
        if r.epoch < self.epoch {
            return;
        }
        self.epoch = r.epoch;
        for (mine, theirs) in [
            (&mut self.progress.offsets, &r.checkpoint),
            (&mut self.progress.timestamps, &r.checkpoint_ts),
        ] {
            for (k, v) in theirs {
                let e = mine.entry(k.clone()).or_insert(*v);
                *e = (*e).max(*v);
            }
        }
    }

    /// Acts on the record a proposal returned: adopt it and go where it says.
    async fn follow(&mut self, myself: &ActorRef<FailoverMsg>, r: &ControlRecord) {
        if r.epoch < self.epoch {
            return;
        }
        self.adopt(r);
        if let Some(to) = Side::parse(&r.active_cluster)
            && to != self.args.active.side()
        {
            let reason = format!("epoch {} by {}: {}", r.epoch, r.decided_by, r.reason);
            self.switch(myself, to, reason).await;
        }
    }

    async fn checkpoint(&mut self) {
        let Some(control) = self.args.control.clone() else {
            return;
        };
        if self.last_checkpoint.elapsed() < self.cfg().failover.checkpoint_interval
            || self.progress.offsets.is_empty()
        {
            return;
        }
        self.last_checkpoint = Instant::now();
        let group = self.cfg().kafka.group_id.clone();
        if let Err(e) = control
            .checkpoint(
                &group,
                self.epoch,
                &self.progress.offsets,
                &self.progress.timestamps,
            )
            .await
        {
            tracing::debug!(error = %e, "checkpoint not written");
        }
    }

    /// Stops the consumer (no commit to the cluster being left), resolves start offsets on the
    /// target and restarts the consumer there.
    async fn switch(&mut self, myself: &ActorRef<FailoverMsg>, to: Side, reason: String) {
        let from = self.args.active.side();
        let started = self.failing_since.unwrap_or_else(Instant::now);
        tracing::warn!(from = from.as_str(), to = to.as_str(), %reason, "switching clusters");
        // Leaving a cluster that still answers (a follower of a planned switch, a failback):
        // drain and commit there. Leaving a dead one: abandon it, commit nothing.
        let leaving_up = match from {
            Side::Primary => self.primary.state().is_up(),
            Side::Secondary => self.secondary.state().is_up(),
        };
        self.stop_consumer(leaving_up).await;
        if leaving_up {
            let src = self.cfg().cluster(from);
            let config = Arc::clone(&self.args.config);
            let s2 = src.clone();
            if let Ok(Ok(committed)) =
                tokio::task::spawn_blocking(move || committed_on(&config, &s2)).await
            {
                for ((t, p), o) in committed {
                    let topic = t.strip_prefix(src.topic_prefix.as_str()).unwrap_or(&t);
                    let e = self
                        .progress
                        .offsets
                        .entry(format!("{topic}/{p}"))
                        .or_insert(o);
                    *e = (*e).max(o);
                }
            }
        }
        if to == Side::Secondary && !self.primary.state().is_up() {
            self.failback_armed = true;
        }
        let target = self.cfg().cluster(to);
        let config = Arc::clone(&self.args.config);
        let progress = self.progress.clone();
        // The target answered the probes, so a failure here is transient: a few attempts before
        // falling back to the group's offsets there (or auto_offset_reset).
        let mut resolved = Vec::new();
        for attempt in 1..=3 {
            let (config, target, progress) =
                (Arc::clone(&config), target.clone(), progress.clone());
            match tokio::task::spawn_blocking(move || resolve_start(&config, &target, &progress))
                .await
            {
                Ok(Ok(r)) => {
                    resolved = r;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(attempt, error = %e, "cannot resolve start offsets on the target")
                }
                Err(e) => tracing::warn!(attempt, error = %e, "start offset resolution panicked"),
            }
            if attempt == 3 {
                tracing::error!(
                    "start offsets unresolved: the group's offsets on the target (or auto_offset_reset) apply"
                );
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let mut sources = BTreeMap::new();
        let mut starts = HashMap::new();
        for StartOffset { tp, source, offset } in resolved {
            *sources.entry(source.to_string()).or_insert(0) += 1;
            metrics::counter!("cdc_relay_failover_offset_source_total", "source" => source)
                .increment(1);
            tracing::info!(topic = %tp.0, partition = tp.1, source, offset = ?offset, "start offset on the target cluster");
            if let Some(o) = offset {
                starts.insert(tp, o);
            }
        }
        self.note_switch(from, to, &reason, sources, &starts, started);
        self.restart(myself, to, starts, reason);
        self.publish();
    }
}

impl FailoverState {
    /// DESIGN §6 planned failover / failback: zero replay when the target has caught up.
    async fn planned(
        &mut self,
        myself: &ActorRef<FailoverMsg>,
        to: Side,
    ) -> Result<serde_json::Value, String> {
        let from = self.args.active.side();
        if from == to {
            return Err(format!("already on the {}", to.as_str()));
        }
        self.failback_armed = false;
        let started = Instant::now();
        tracing::warn!(
            from = from.as_str(),
            to = to.as_str(),
            "planned switch: draining and committing"
        );
        // 1. Drain and commit on the current cluster.
        self.stop_consumer(true).await;
        // 2. What was committed there, in the target's topic names.
        let (src, dst) = (self.cfg().cluster(from), self.cfg().cluster(to));
        let config = Arc::clone(&self.args.config);
        let src2 = src.clone();
        let committed = tokio::task::spawn_blocking(move || committed_on(&config, &src2))
            .await
            .map_err(|e| e.to_string())??;
        let target: BTreeMap<(String, i32), i64> = committed
            .iter()
            .map(|((t, p), o)| {
                let source = t.strip_prefix(src.topic_prefix.as_str()).unwrap_or(t);
                ((format!("{}{source}", dst.topic_prefix), *p), *o)
            })
            .collect();
        // 3. Wait until the target holds everything committed (link lag 0 for those records).
        let deadline = Instant::now() + self.cfg().failover.planned_timeout;
        let is_caught_up = loop {
            let (d, t) = (dst.clone(), target.clone());
            let ok = tokio::task::spawn_blocking(move || caught_up(&d, &t))
                .await
                .unwrap_or(false);
            if ok || Instant::now() >= deadline {
                break ok;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if !is_caught_up {
            tracing::warn!(
                "planned switch: the target did not catch up in time; switching anyway (records may be replayed)"
            );
        }
        // 4. Bump the epoch (shared decision), then switch with exact start offsets.
        let reason = format!(
            "planned {}",
            if to == Side::Secondary {
                "failover"
            } else {
                "failback"
            }
        );
        if let Some(control) = self.args.control.clone() {
            let group = self.cfg().kafka.group_id.clone();
            match control
                .switch(&group, self.epoch, to.as_str(), &self.args.pod, &reason)
                .await
            {
                Ok(Switch::Won(r)) => self.epoch = r.epoch,
                Ok(Switch::Lost(r)) => {
                    self.epoch = r.epoch;
                    let side = Side::parse(&r.active_cluster).unwrap_or(from);
                    self.restart(
                        myself,
                        side,
                        HashMap::new(),
                        format!("epoch {} moved meanwhile", r.epoch),
                    );
                    return Err(format!(
                        "another pod decided epoch {} ({}) meanwhile",
                        r.epoch, r.active_cluster
                    ));
                }
                Err(e) => {
                    self.restart(
                        myself,
                        from,
                        HashMap::new(),
                        "planned switch aborted".into(),
                    );
                    return Err(format!("control table: {e}"));
                }
            }
        } else {
            self.epoch += 1;
        }
        let starts: HashMap<(String, i32), i64> = target.clone().into_iter().collect();
        metrics::counter!("cdc_relay_failover_offset_source_total", "source" => "committed")
            .increment(starts.len() as u64);
        let sources = BTreeMap::from([("committed".to_string(), starts.len())]);
        self.note_switch(from, to, &reason, sources, &starts, started);
        self.restart(myself, to, starts, reason);
        self.publish();
        Ok(serde_json::json!({
            "from": from, "to": to, "epoch": self.epoch, "caught_up": is_caught_up,
            "waited_ms": started.elapsed().as_millis() as u64,
            "start_offsets": target.iter().map(|((t, p), o)| (format!("{t}/{p}"), *o)).collect::<BTreeMap<_, _>>(),
        }))
    }

    /// Stops the running consumer and waits for it: drained and committed when `graceful`.
    async fn stop_consumer(&self, graceful: bool) {
        let current = self.args.consumer.lock().ok().and_then(|c| c.clone());
        if let Some(c) = current {
            consumer::stop(&c, graceful, self.cfg().runtime.shutdown_timeout).await;
        }
    }

    /// Records a switch for `/status` and the duration metrics, and counts it.
    fn note_switch(
        &mut self,
        from: Side,
        to: Side,
        reason: &str,
        offset_sources: BTreeMap<String, usize>,
        starts: &HashMap<(String, i32), i64>,
        started: Instant,
    ) {
        metrics::counter!("cdc_relay_failovers_total", "to" => to.as_str()).increment(1);
        self.last_switch = Some(SwitchInfo {
            from,
            to,
            epoch: self.epoch,
            reason: reason.to_string(),
            offset_sources,
            start_offsets: starts
                .iter()
                .map(|((t, p), o)| (format!("{t}/{p}"), *o))
                .collect(),
            duration_seconds: None,
            first_record_seconds: None,
            started,
            restarted: std::time::Instant::now(),
            completed_before: completed(&self.args.status),
        });
    }

    /// Points `Active` at `side` and has the root start the consumer again.
    fn restart(
        &self,
        myself: &ActorRef<FailoverMsg>,
        side: Side,
        starts: HashMap<(String, i32), i64>,
        why: String,
    ) {
        tracing::info!(side = side.as_str(), %why, "starting the consumer");
        self.args.active.set(side, starts);
        if let Some(sup) = myself.try_get_supervisor() {
            let _ = sup.send_message(SupervisorMsg::Restart("consumer".into()));
        }
    }
}

impl Actor for FailoverActor {
    type Msg = FailoverMsg;
    type State = FailoverState;
    type Arguments = FailoverArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<FailoverMsg>,
        args: FailoverArgs,
    ) -> Result<FailoverState, ActorProcessingErr> {
        let c = &args.config;
        for to in ["primary", "secondary"] {
            metrics::counter!("cdc_relay_failovers_total", "to" => to).increment(0);
        }
        let hc = HealthConfig {
            unhealthy_after: c.failover.unhealthy_after,
            recovered_after: c.failover.failback_after,
        };
        let (p, s) = (c.cluster(Side::Primary), c.cluster(Side::Secondary));
        let probe = LagProbe::new(
            cluster(&p),
            cluster(&s),
            c.kafka.topics.clone(),
            &s.topic_prefix,
        )
        .map(Arc::new)
        .map_err(|e| format!("cannot create the cluster probes: {e}"))?;
        myself.send_interval(c.failover.probe_interval, || FailoverMsg::Tick);
        Ok(FailoverState {
            args,
            probe: Some(probe),
            probing: false,
            primary: HealthMachine::new(hc),
            secondary: HealthMachine::new(hc),
            epoch: 0,
            failing_since: None,
            last_checkpoint: Instant::now(),
            progress: Progress::default(),
            lags: Vec::new(),
            last_switch: None,
            failback_armed: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<FailoverMsg>,
        msg: FailoverMsg,
        state: &mut FailoverState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FailoverMsg::Tick => {
                if state.probing {
                    return Ok(());
                }
                let Some(probe) = state.probe.clone() else {
                    return Ok(());
                };
                state.probing = true;
                let timeout = state.cfg().failover.probe_timeout;
                let me = myself.clone();
                tokio::task::spawn_blocking(move || {
                    let primary_up = probe.primary_up(timeout);
                    let secondary_up = probe.secondary_up(timeout);
                    let lags = if primary_up && secondary_up {
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
                        probe.measure(timeout, now_ms).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let _ = me.cast(FailoverMsg::Probed(ProbeResult {
                        primary_up,
                        secondary_up,
                        lags,
                    }));
                });
            }
            FailoverMsg::Probed(r) => state.on_probe(&myself, r).await,
            FailoverMsg::Planned { to, reply } => {
                let r = state.planned(&myself, to).await;
                let _ = reply.send(r);
            }
        }
        Ok(())
    }
}
