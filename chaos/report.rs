//! A scenario's report: the checker's verdict and anomaly counts with the run's figures (records
//! produced, the relay's outcomes, dead-lettered, RPO, maximum consumer lag, time to recover,
//! failover time), written as JSON to `target/tmp/chaos/<scenario>.json`. `chaos/report.py`
//! merges them into `chaos/report.json` and the table in `chaos/README.md`.
//!
//! Reporting only: it must not judge (the checker did) or change what it is given.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::checker::{Analysis, Anomaly};

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub valid: bool,
    pub anomalies: BTreeMap<String, Anomaly>,
    pub produced: u64,
    pub poison: u64,
    /// The relay's record outcomes (`cdc_relay_records_processed_total`), summed over its
    /// processes' lives as scraped (a life's last moments before a SIGKILL are not counted).
    pub relay_outcomes: BTreeMap<String, f64>,
    /// Good records a later record of the same key replaced in the final state (the oracle's).
    pub superseded: u64,
    pub dead_lettered: u64,
    pub rpo: u64,
    pub max_lag: i64,
    /// Last fault's end → the first lag reading at or under the threshold (ms).
    pub recovery_ms: Option<u64>,
    pub recovered_lag: i64,
    /// Fault → the relay consuming the other region (ms), in region scenarios.
    pub failover_ms: Option<u64>,
    /// Scenario-specific figures (e.g. `link_lag_before_kill`, the relay's own estimate of the RPO).
    pub figures: BTreeMap<String, f64>,
    pub faults: Vec<Fault>,
    pub load_end_ms: u64,
    pub drained_ms: u64,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub what: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    name: &str,
    a: &Analysis,
    relay_outcomes: &BTreeMap<String, f64>,
    lag: &[(u64, i64)],
    faults: &[(String, u64, Option<u64>)],
    load_end_ms: u64,
    drained_ms: u64,
    dead_lettered: u64,
    recovered_lag: i64,
) -> Report {
    let last_end = faults.iter().filter_map(|f| f.2).max();
    let recovery_ms = last_end.and_then(|end| {
        lag.iter()
            .find(|(at, l)| *at >= end && *l <= recovered_lag)
            .map(|(at, _)| at - end)
    });
    Report {
        scenario: name.to_string(),
        valid: a.valid,
        anomalies: a.anomalies.clone(),
        produced: a.produced,
        poison: a.poison,
        relay_outcomes: relay_outcomes.clone(),
        superseded: a.superseded,
        dead_lettered,
        rpo: a.rpo,
        max_lag: lag.iter().map(|(_, l)| *l).max().unwrap_or(0),
        recovery_ms,
        recovered_lag,
        failover_ms: None,
        figures: BTreeMap::new(),
        faults: faults
            .iter()
            .map(|(what, s, e)| Fault {
                what: what.clone(),
                start_ms: *s,
                end_ms: *e,
            })
            .collect(),
        load_end_ms,
        drained_ms,
        samples: a.samples,
    }
}

/// Where the scenario reports go.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos")
}

pub fn write(r: &Report) {
    let dir = dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}.json", r.scenario));
    if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(r).unwrap_or_default()) {
        eprintln!("could not write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_measured_from_the_last_fault_end() {
        let a = crate::checker::check(&Default::default());
        let lag = [(100, 50), (900, 5000), (1500, 900), (2100, 100), (2600, 10)];
        let faults = [("broker down".to_string(), 200, Some(1000))];
        let r = build("t", &a, &BTreeMap::new(), &lag, &faults, 3000, 3500, 0, 600);
        assert_eq!(r.recovery_ms, Some(1100));
        assert_eq!(r.max_lag, 5000);
        let never = build(
            "t",
            &a,
            &BTreeMap::new(),
            &lag[..3],
            &faults,
            3000,
            3500,
            0,
            600,
        );
        assert_eq!(never.recovery_ms, None);
    }
}
