//! One-for-one supervision with exponential backoff and escalation (DESIGN §2).
//!
//! ractor has no restart strategies, so supervisors (the Relay root, the Consumer for its
//! partitions) keep a `RestartBudget` per child and ask it what to do when a child fails.
//! This module decides; it must not spawn or know what the children are. `Supervisor` is a
//! ready-made root actor for children described by a `ChildSpec`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a supervisor treats failing children.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// More than this many restarts of one child within `period` escalates.
    pub max_restarts: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// First restart delay; doubles per restart within the period, capped at `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            period: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// What to do with a failed child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restart it after this delay.
    Restart { after: Duration, attempt: u32 },
    /// Too many restarts within the period: fail the supervisor.
    Escalate { restarts: u32 },
}

/// Restart history per child name.
#[derive(Debug, Default)]
pub struct RestartBudget {
    policy: RestartPolicy,
    history: HashMap<String, VecDeque<Instant>>,
}

impl RestartBudget {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartBudget {
            policy,
            history: HashMap::new(),
        }
    }

    /// Records a failure of `child` at `now` and decides.
    pub fn on_failure(&mut self, child: &str, now: Instant) -> Decision {
        let h = self.history.entry(child.to_string()).or_default();
        while let Some(&t) = h.front() {
            if now.duration_since(t) > self.policy.period {
                h.pop_front();
            } else {
                break;
            }
        }
        let recent = u32::try_from(h.len()).unwrap_or(u32::MAX);
        if recent >= self.policy.max_restarts {
            return Decision::Escalate { restarts: recent };
        }
        h.push_back(now);
        let factor = 2u32.saturating_pow(recent);
        let after = self
            .policy
            .backoff_initial
            .saturating_mul(factor)
            .min(self.policy.backoff_max);
        metrics::counter!("cdc_relay_actor_restarts_total", "actor" => child_kind(child))
            .increment(1);
        Decision::Restart {
            after,
            attempt: recent + 1,
        }
    }

    /// Forgets a child (it stopped cleanly or was removed on purpose).
    pub fn forget(&mut self, child: &str) {
        self.history.remove(child);
    }
}

/// The metric label for a child: its name up to the first `:` (`partition:orders:3` → `partition`).
/// Shows `cdc_relay_actor_restarts_total` for a child's kind at 0 from its start, so a dashboard
/// or alert sees the series before the first restart.
pub fn register_restarts(child: &str) {
    metrics::counter!("cdc_relay_actor_restarts_total", "actor" => child_kind(child)).increment(0);
}

fn child_kind(name: &str) -> String {
    name.split(':').next().unwrap_or(name).to_string()
}

/// How to (re)start one child of a `Supervisor`.
pub trait ChildSpec: Send + Sync + 'static {
    /// Unique, stable name (used for restart budgets and logs).
    fn name(&self) -> String;
    /// Spawns the child linked to `supervisor`.
    fn spawn(
        &self,
        supervisor: ActorCell,
    ) -> futures::future::BoxFuture<'static, Result<ActorCell, SpawnErr>>;
}

/// Messages to a `Supervisor`.
pub enum SupervisorMsg {
    /// Restart the named child now (sent to itself after the backoff delay).
    Restart(String),
}

/// Arguments of a `Supervisor`.
pub struct SupervisorArgs {
    pub policy: RestartPolicy,
    pub children: Vec<Arc<dyn ChildSpec>>,
    /// Where the root reports escalation (the binary exits non-zero on it). `None` for a nested
    /// supervisor, which escalates by failing, so its own supervisor decides.
    pub escalate_to: Option<mpsc::UnboundedSender<String>>,
}

pub struct SupervisorState {
    budget: RestartBudget,
    specs: HashMap<String, Arc<dyn ChildSpec>>,
    running: HashMap<ractor::ActorId, String>,
    escalate_to: Option<mpsc::UnboundedSender<String>>,
}

/// A generic one-for-one supervisor actor.
pub struct Supervisor;

impl Supervisor {
    async fn start_child(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
    ) -> Result<(), ActorProcessingErr> {
        let Some(spec) = state.specs.get(name).cloned() else {
            return Ok(());
        };
        let cell = spec.spawn(myself.get_cell()).await?;
        register_restarts(name);
        state.running.insert(cell.get_id(), name.to_string());
        Ok(())
    }
}

impl Supervisor {
    /// Restarts `name` after its backoff, or escalates once its budget is spent.
    fn on_child_failed(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: String,
        err: String,
    ) -> Result<(), ActorProcessingErr> {
        match state.budget.on_failure(&name, Instant::now()) {
            Decision::Restart { after, attempt } => {
                tracing::warn!(child = %name, error = %err, attempt, delay_ms = after.as_millis() as u64, "child failed; restarting");
                myself.send_after(after, move || SupervisorMsg::Restart(name));
                Ok(())
            }
            Decision::Escalate { restarts } => {
                let reason = format!(
                    "child {name} failed {restarts} times within the restart period; last error: {err}"
                );
                tracing::error!(child = %name, restarts, "escalating: {reason}");
                if let Some(tx) = &state.escalate_to {
                    let _ = tx.send(reason.clone());
                    myself.stop(Some(reason));
                    Ok(())
                } else {
                    Err(reason.into())
                }
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            budget: RestartBudget::new(args.policy),
            specs: args
                .children
                .iter()
                .map(|c| (c.name(), Arc::clone(c)))
                .collect(),
            running: HashMap::new(),
            escalate_to: args.escalate_to,
        };
        for c in &args.children {
            Supervisor::start_child(&myself, &mut state, &c.name()).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(name) => {
                tracing::info!(child = %name, "restarting child");
                match Supervisor::start_child(&myself, state, &name).await {
                    Ok(()) => Ok(()),
                    // A restart that fails to start counts as another failure of the child.
                    Err(e) => Supervisor::on_child_failed(&myself, state, name, e.to_string()),
                }
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                match state.running.remove(&cell.get_id()) {
                    Some(name) => {
                        Supervisor::on_child_failed(&myself, state, name, err.to_string())
                    }
                    None => Ok(()),
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(name) = state.running.remove(&cell.get_id()) {
                    tracing::info!(child = %name, ?reason, "child stopped");
                    state.budget.forget(&name);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(max: u32) -> RestartPolicy {
        RestartPolicy {
            max_restarts: max,
            period: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_backs_off_exponentially_and_escalates() {
        let mut b = RestartBudget::new(policy(3));
        let t0 = Instant::now();
        assert_eq!(
            b.on_failure("x", t0),
            Decision::Restart {
                after: Duration::from_millis(10),
                attempt: 1
            }
        );
        assert_eq!(
            b.on_failure("x", t0),
            Decision::Restart {
                after: Duration::from_millis(20),
                attempt: 2
            }
        );
        assert_eq!(
            b.on_failure("x", t0),
            Decision::Restart {
                after: Duration::from_millis(40),
                attempt: 3
            }
        );
        assert_eq!(b.on_failure("x", t0), Decision::Escalate { restarts: 3 });
        // Other children have their own budget.
        assert!(matches!(
            b.on_failure("y", t0),
            Decision::Restart { attempt: 1, .. }
        ));
        // Failures older than the period no longer count.
        let later = t0 + Duration::from_secs(11);
        assert!(matches!(
            b.on_failure("x", later),
            Decision::Restart { attempt: 1, .. }
        ));
    }

    /// A child that counts its starts and panics when told to.
    struct Crashy {
        starts: Arc<AtomicU32>,
    }
    impl Actor for Crashy {
        type Msg = bool; // true = panic
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<bool>, _: ()) -> Result<(), ActorProcessingErr> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn handle(
            &self,
            _: ActorRef<bool>,
            m: bool,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            if m {
                panic!("told to crash");
            }
            Ok(())
        }
    }
    struct CrashySpec {
        name: &'static str,
        starts: Arc<AtomicU32>,
    }
    impl ChildSpec for CrashySpec {
        fn name(&self) -> String {
            self.name.into()
        }
        fn spawn(
            &self,
            sup: ActorCell,
        ) -> futures::future::BoxFuture<'static, Result<ActorCell, SpawnErr>> {
            let starts = Arc::clone(&self.starts);
            let name = self.name.to_string();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(Some(name), Crashy { starts }, (), sup).await?;
                Ok(r.get_cell())
            })
        }
    }

    /// Makes the currently registered child named `name` panic.
    async fn crash_child(name: &str) {
        for _ in 0..200 {
            if let Some(cell) = ractor::registry::where_is(name) {
                let r: ActorRef<bool> = cell.into();
                if r.cast(true).is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("child {name} never came back");
    }

    async fn wait_for(starts: &AtomicU32, n: u32) {
        for _ in 0..400 {
            if starts.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("expected {n} starts, saw {}", starts.load(Ordering::SeqCst));
    }

    async fn supervise(
        name: &'static str,
        max: u32,
    ) -> (
        Arc<AtomicU32>,
        mpsc::UnboundedReceiver<String>,
        tokio::task::JoinHandle<()>,
    ) {
        let starts = Arc::new(AtomicU32::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let (_sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                policy: policy(max),
                children: vec![Arc::new(CrashySpec {
                    name,
                    starts: Arc::clone(&starts),
                })],
                escalate_to: Some(tx),
            },
        )
        .await
        .unwrap();
        wait_for(&starts, 1).await;
        (starts, rx, handle)
    }

    #[tokio::test]
    async fn panicking_child_is_restarted() {
        let (starts, mut rx, handle) = supervise("crashy-restart", 5).await;
        for n in 2..=4 {
            crash_child("crashy-restart").await;
            wait_for(&starts, n).await;
        }
        assert!(
            rx.try_recv().is_err(),
            "must not escalate within the budget"
        );
        assert!(!handle.is_finished(), "the supervisor keeps running");
    }

    #[tokio::test]
    async fn too_many_restarts_escalate_and_stop_the_root() {
        let (starts, mut rx, handle) = supervise("crashy-escalate", 2).await;
        crash_child("crashy-escalate").await;
        wait_for(&starts, 2).await;
        crash_child("crashy-escalate").await;
        wait_for(&starts, 3).await;
        assert!(rx.try_recv().is_err(), "two restarts are within the budget");
        // The third failure within the period escalates, and the root stops.
        crash_child("crashy-escalate").await;
        let reason = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            reason.contains("crashy-escalate failed 2 times"),
            "{reason}"
        );
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "no restart after escalation"
        );
    }
}
