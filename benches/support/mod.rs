//! Benchmark support shared by `benches/e2e.rs` (`make bench`) and `tests/bench_smoke.rs` (the
//! same instrument on tiny sizes inside `make test`). Benchmarks only: nothing here is product
//! code or a behaviour-test double.

#![allow(dead_code)]

pub mod e2e;
/// The tests' OTLP receiver, counting only (trace export cases).
#[path = "../../tests/common/otlp.rs"]
pub mod otlp;
pub mod responder;
