//! `make bench`, end to end: the relay binary as its own process against records pre-produced
//! into the lab, every case in one run (see `support/e2e.rs`). Prints the table, writes the
//! figures into BENCHMARKS.md (between its `bench:begin`/`bench:end` markers) and the plot of
//! throughput against concurrency (`benches/throughput-vs-concurrency.svg`).
//!
//! `CDC_RELAY_BENCH=quick` runs a smaller plan.

mod support;

use std::path::PathBuf;

use support::e2e::{Case, Group, Target};

const RELAY: &str = env!("CARGO_BIN_EXE_cdc-relay");

fn responder(mode: &'static str, delay_ms: u64, concurrency: Option<usize>) -> Case {
    Case::Relay(Target::Responder {
        mode,
        delay_ms,
        concurrency,
    })
}

/// Bytes of padding that make the generator's Qlik Avro records about 300 B and 2 KB.
const PAD_300B: usize = 170;
const PAD_2KB: usize = 1_870;

fn plan(quick: bool) -> Vec<Group> {
    let scale = |n: u64| if quick { n / 5 } else { n };
    let main_cases = || {
        vec![
            Case::RawConsume,
            Case::Relay(Target::Blackhole),
            responder("conditional", 0, None),
            responder("transact", 0, None),
            responder("batch", 0, None),
        ]
    };
    let mut scaling = vec![Case::RawConsume];
    for mode in ["conditional", "transact", "batch"] {
        for c in [16, 64, 256] {
            scaling.push(responder(mode, 5, Some(c)));
        }
    }
    vec![
        // Sized to the mock cluster's ~5 MiB per partition (generate fails if anything was lost).
        Group {
            label: "12 partitions, ~300 B".into(),
            partitions: 12,
            note_bytes: PAD_300B,
            records: scale(120_000),
            cases: {
                // The latency target: p99 at half the blackhole's rate, and at a quarter (this
                // group only).
                let mut c = main_cases();
                c.insert(2, Case::Paced { fraction: 0.5 });
                c.insert(3, Case::Paced { fraction: 0.25 });
                // Trace export's cost (issue #11: 1% within 5% of off).
                let traced = |ratio, collector_down| Case::Traced {
                    ratio,
                    collector_down,
                };
                c.insert(4, traced(None, false));
                c.insert(5, traced(Some(0.01), false));
                c.insert(6, traced(Some(1.0), false));
                // Export failing must not slow the relay down.
                c.insert(7, traced(Some(1.0), true));
                c
            },
        },
        Group {
            label: "3 partitions, ~300 B".into(),
            partitions: 3,
            note_bytes: PAD_300B,
            records: scale(30_000),
            cases: main_cases(),
        },
        Group {
            label: "12 partitions, ~2 KB".into(),
            partitions: 12,
            note_bytes: PAD_2KB,
            records: scale(18_000),
            cases: main_cases(),
        },
        Group {
            label: "3 partitions, ~2 KB".into(),
            partitions: 3,
            note_bytes: PAD_2KB,
            records: scale(4_500),
            cases: main_cases(),
        },
        Group {
            label: "12 partitions, ~300 B, 5 ms per request".into(),
            partitions: 12,
            note_bytes: PAD_300B,
            records: scale(24_000),
            cases: scaling,
        },
        Group {
            label: "12 partitions, ~300 B, moto".into(),
            partitions: 12,
            note_bytes: PAD_300B,
            records: scale(6_000),
            cases: vec![
                Case::RawConsume,
                Case::Relay(Target::Moto),
                Case::RawSdkToMoto { concurrency: 64 },
            ],
        },
    ]
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}; nproc {nproc} ({cpu}); memory {mem}; commit {rev}")
}

fn main() {
    // nextest (and `cargo test --benches`) list tests: this binary has none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("e2e bench: run it with `make bench` (cargo bench --bench e2e)");
        return;
    }
    let quick = std::env::var("CDC_RELAY_BENCH").is_ok_and(|v| v == "quick");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("e2e bench: {e}");
            std::process::exit(1);
        }
    };
    // `CDC_RELAY_BENCH_GROUP=<n>`: only the n-th group of the plan (for profiles).
    let mut groups = plan(quick);
    if let Some(n) = std::env::var("CDC_RELAY_BENCH_GROUP")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        groups = groups.into_iter().skip(n).take(1).collect();
    }
    // `CDC_RELAY_BENCH_BIN=<path>`: another build of the relay (a before/after comparison on
    // the same records and machine); the figures are then not this build's.
    let bin = std::env::var("CDC_RELAY_BENCH_BIN").unwrap_or_else(|_| RELAY.to_string());
    let results = match rt.block_on(support::e2e::run(bin.as_ref(), &groups)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("e2e bench failed: {e}");
            std::process::exit(1);
        }
    };
    let table = support::e2e::table(&results);
    let machine = machine();
    println!("\n{machine}\n\n{table}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::create_dir_all(root.join("target/bench"));
    let _ = std::fs::write(
        root.join("target/bench/e2e.json"),
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    );
    // A partial run (one group or some cases) does not overwrite the full run's figures.
    if std::env::var_os("CDC_RELAY_BENCH_GROUP").is_some()
        || std::env::var_os("CDC_RELAY_BENCH_CASE").is_some()
        || std::env::var_os("CDC_RELAY_BENCH_BIN").is_some()
    {
        eprintln!(
            "partial run: BENCHMARKS.md and the plot left as they are (target/bench/e2e.json)"
        );
        return;
    }
    let plot = root.join("benches/throughput-vs-concurrency.svg");
    if let Err(e) = support::e2e::plot(&results, &plot) {
        eprintln!("plot not written: {e}");
    }
    let md = root.join("BENCHMARKS.md");
    let section = format!(
        "<!-- bench:begin (written by `make bench`) -->\n`make bench` ({}), {machine}.\n\n{table}\n<!-- bench:end -->",
        if quick {
            "CDC_RELAY_BENCH=quick"
        } else {
            "full plan"
        }
    );
    let text = std::fs::read_to_string(&md).unwrap_or_default();
    let updated = match (
        text.find("<!-- bench:begin"),
        text.find("<!-- bench:end -->"),
    ) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{section}{}",
            &text[..a],
            &text[b + "<!-- bench:end -->".len()..]
        ),
        _ => format!("{text}\n{section}\n"),
    };
    if let Err(e) = std::fs::write(&md, updated) {
        eprintln!("BENCHMARKS.md not written: {e}");
    }
}
