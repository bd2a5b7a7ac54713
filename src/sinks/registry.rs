//! The output registry (DESIGN §3.6): every output type a route can have, registered in one place,
//! their validation, and a route's outputs in order — its DynamoDB table (`table`), its events
//! (`[eventbridge]`), then its `[[routes.outputs]]` entries by `type` — built through `Wiring`.
//!
//! The partition pipeline, the relay wiring and `check-config` know outputs only through this
//! module and the `Output` trait. It must not hold an output type's own logic.

use std::sync::Arc;

use super::output::{Output, OutputType};
use super::wiring::Wiring;
use crate::config::{Config, OutputSpec, Problem, RouteConfig};

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

/// Problems of every route's `[[routes.outputs]]` entries, with their keys
/// (`routes[i].outputs[j].key`), as `check-config` reports them.
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        for (j, o) in r.outputs.iter().enumerate() {
            for (key, why) in validate(o) {
                let at = if key.is_empty() {
                    format!("routes[{i}].outputs[{j}]")
                } else {
                    format!("routes[{i}].outputs[{j}].{key}")
                };
                out.push(Problem { key: at, why });
            }
        }
    }
    out
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
