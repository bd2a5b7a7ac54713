//! `Wiring`: what building outputs needs (the config, the AWS SDK config, the status board) and
//! what it collects — one supervised pool per target, shared by every output writing there, their
//! fault injectors, and values shared between outputs (SDK clients).
//!
//! Output types use it from their `build`; it knows no output type.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use super::SinkRequest;
use super::pool::{PoolHandle, PoolSpec};
use crate::config::Config;
use crate::status::StatusBoard;
use crate::supervision::ChildSpec;

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
