//! The end-to-end benchmark on tiny sizes, so the instrument never rots: every case completes and
//! reports a figure. No timing is asserted.

#[path = "../benches/support/mod.rs"]
mod support;

use support::e2e::{Case, Group, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_bench_smoke_every_case_completes_and_reports() {
    let responder = |mode, delay_ms, concurrency| {
        Case::Relay(Target::Responder {
            mode,
            delay_ms,
            concurrency,
        })
    };
    let groups = vec![
        Group {
            label: "smoke".into(),
            partitions: 3,
            note_bytes: 130,
            records: 2_000,
            cases: vec![
                Case::RawConsume,
                Case::Relay(Target::Blackhole),
                Case::Paced { fraction: 0.5 },
                responder("conditional", 0, None),
                responder("transact", 0, None),
                responder("batch", 1, Some(8)),
            ],
        },
        Group {
            label: "smoke, moto".into(),
            partitions: 3,
            note_bytes: 0,
            records: 300,
            cases: vec![
                Case::RawConsume,
                Case::Relay(Target::Moto),
                Case::RawSdkToMoto { concurrency: 8 },
            ],
        },
    ];
    let results = support::e2e::run(env!("CARGO_BIN_EXE_cdc-relay").as_ref(), &groups)
        .await
        .expect("the benchmark runs");
    eprintln!("{}", support::e2e::table(&results));
    assert_eq!(results.len(), 9);
    for m in &results {
        assert!(m.skipped.is_none(), "{} skipped: {:?}", m.case, m.skipped);
        assert!(
            m.records_per_sec.is_some_and(|r| r > 0.0),
            "{} reported nothing",
            m.case
        );
        if m.case.starts_with("relay") {
            assert!(m.cpu_s_per_1k.is_some() && m.p99_ms.is_some(), "{m:?}");
        }
    }
    let svg = tempfile::NamedTempFile::new().unwrap();
    support::e2e::plot(&results, &svg.path().to_path_buf()).unwrap();
}
