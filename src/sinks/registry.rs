//! The output registry (DESIGN §3.6): every output type a route can have, registered in one place,
//! and the wiring that builds a route's outputs in order — its DynamoDB table (`table`), its
//! events (`[eventbridge]`), then its `[[routes.outputs]]` entries by `type`. Outputs that write
//! to the same target share one supervised pool (`Wiring::pool`).
//!
//! The partition pipeline, the relay wiring and `check-config` know outputs only through this
//! module and the `Output` trait. It must not hold an output type's own logic.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use super::SinkRequest;
use super::output::Output;
use super::pool::{PoolHandle, PoolSpec};
use crate::config::{Config, OutputSpec, RouteConfig};
use crate::status::StatusBoard;
use crate::supervision::ChildSpec;

/// Builds the output of one `[[routes.outputs]]` entry for a route.
pub type BuildOutput =
    fn(&OutputSpec, &RouteConfig, &mut Wiring<'_>) -> Result<Arc<dyn Output>, String>;

/// An output type that `[[routes.outputs]]` entries name with `type`.
pub struct OutputType {
    pub name: &'static str,
    /// Problems of one entry: (key within the entry, why).
    pub validate: fn(&OutputSpec) -> Vec<(String, String)>,
    /// Builds the output of one entry for a route.
    pub build: BuildOutput,
}

/// The registered output types.
pub const TYPES: &[OutputType] = &[super::blackhole::TYPE];

/// The registered type called `name`.
pub fn find(name: &str) -> Option<&'static OutputType> {
    TYPES.iter().find(|t| t.name == name)
}

/// Problems of one `[[routes.outputs]]` entry: (key within the entry, why).
pub fn validate(spec: &OutputSpec) -> Vec<(String, String)> {
    match find(&spec.kind) {
        Some(t) => (t.validate)(spec),
        None => vec![(
            "type".into(),
            format!(
                "unknown output type {:?}; one of: {}",
                spec.kind,
                TYPES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            ),
        )],
    }
}

/// What building outputs needs, and what it collects: the pools to supervise, their fault
/// injectors, and values shared between outputs (pools, SDK clients).
pub struct Wiring<'a> {
    pub config: &'a Config,
    pub sdk: &'a aws_config::SdkConfig,
    /// The relay's region (written into events).
    pub region: &'a str,
    pub status: &'a StatusBoard,
    /// The pools, to run as children of the root supervisor.
    pub children: Vec<Arc<dyn ChildSpec>>,
    /// Fault injection per pool, by pool name (tests, chaos): fails its actor.
    pub faults: Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)>,
    shared: HashMap<String, Box<dyn Any + Send + Sync>>,
}

impl<'a> Wiring<'a> {
    pub fn new(
        config: &'a Config,
        sdk: &'a aws_config::SdkConfig,
        region: &'a str,
        status: &'a StatusBoard,
    ) -> Self {
        Wiring {
            config,
            sdk,
            region,
            status,
            children: Vec::new(),
            faults: Vec::new(),
            shared: HashMap::new(),
        }
    }

    /// The pool named `name`: made by `make` the first time (one pool per target, shared by
    /// every output writing there), registered as a supervised child and on the status board.
    pub fn pool<R: SinkRequest>(
        &mut self,
        name: &str,
        make: impl FnOnce() -> PoolHandle<R>,
    ) -> PoolHandle<R> {
        if let Some(p) = self
            .shared
            .get(name)
            .and_then(|b| b.downcast_ref::<PoolHandle<R>>())
        {
            return p.clone();
        }
        let pool = make();
        self.status.add_sink(pool.name(), Arc::clone(pool.health()));
        self.children.push(Arc::new(PoolSpec(pool.clone())));
        let f = pool.clone();
        self.faults.push((
            pool.name().to_string(),
            Arc::new(move || f.inject_failure()),
        ));
        self.shared.insert(name.to_string(), Box::new(pool.clone()));
        pool
    }

    /// A value shared by outputs (an SDK client, say), made once under `name`.
    pub fn shared<T: Clone + Send + Sync + 'static>(
        &mut self,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> T {
        if let Some(v) = self.shared.get(name).and_then(|b| b.downcast_ref::<T>()) {
            return v.clone();
        }
        let v = make();
        self.shared.insert(name.to_string(), Box::new(v.clone()));
        v
    }
}

/// The outputs of `route`, in order: its DynamoDB table, its events, then `[[routes.outputs]]`.
pub fn outputs(route: &RouteConfig, w: &mut Wiring<'_>) -> Result<Vec<Arc<dyn Output>>, String> {
    let mut out = Vec::new();
    if let Some(o) = super::dynamodb::output_for(route, w) {
        out.push(o);
    }
    if let Some(o) = super::eventbridge::output_for(route, w) {
        out.push(o);
    }
    for spec in &route.outputs {
        let t = find(&spec.kind).ok_or_else(|| format!("unknown output type {:?}", spec.kind))?;
        out.push((t.build)(spec, route, w)?);
    }
    if out.is_empty() {
        return Err(format!("route {} has no output", route.topic));
    }
    Ok(out)
}
