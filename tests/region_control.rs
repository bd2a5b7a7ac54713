//! The shared failover decision against moto's DynamoDB: one record per group, epoch-fenced
//! switches (exactly one of two racing proposals wins), epoch-fenced checkpoints.

mod common;

use std::collections::BTreeMap;

use cdc_relay::region::control::{ControlTable, Switch};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switches_are_epoch_fenced_and_one_of_two_racers_wins() {
    // moto's threaded server lets two racing conditional updates of one item both succeed
    // (seen in 2 of 8 parallel runs); DynamoDB serializes them. This moto serves one request at
    // a time, so the race below is decided the way DynamoDB decides it.
    let moto = tokio::task::spawn_blocking(cdc_relay::lab::moto::Moto::start_serialized)
        .await
        .unwrap()
        .expect("moto installed (scripts/setup.sh)");
    let aws = cdc_relay::config::AwsConfig {
        region: Some("us-west-2".into()),
        endpoint_url: Some(moto.endpoint().to_string()),
    };
    let ddb = aws_sdk_dynamodb::Client::new(
        &cdc_relay::sinks::aws::sdk_config(&aws, std::time::Duration::from_secs(10)).await,
    );
    cdc_relay::lab::create_table(&ddb, "relay-control", "group")
        .await
        .unwrap();
    let a = ControlTable::new(ddb.clone(), "relay-control");
    let b = ControlTable::new(ddb.clone(), "relay-control");
    assert_eq!(a.read("g").await.unwrap(), None);
    let (ra, rb) = tokio::join!(
        a.read_or_init("g", "primary", "pod-a"),
        b.read_or_init("g", "primary", "pod-b")
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb, "both see the same initial record");
    assert_eq!((ra.epoch, ra.active_cluster.as_str()), (0, "primary"));

    // Both pods see the primary die and propose at once: exactly one wins.
    let (sa, sb) = tokio::join!(
        a.switch("g", 0, "secondary", "pod-a", "primary down"),
        b.switch("g", 0, "secondary", "pod-b", "primary down")
    );
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    let (won, lost) = match (&sa, &sb) {
        (Switch::Won(w), Switch::Lost(l)) | (Switch::Lost(l), Switch::Won(w)) => (w, l),
        other => panic!("exactly one must win: {other:?}"),
    };
    assert_eq!(won, lost, "the loser sees the winner's record");
    assert_eq!((won.epoch, won.active_cluster.as_str()), (1, "secondary"));
    assert!(["pod-a", "pod-b"].contains(&won.decided_by.as_str()));
    assert_eq!(won.reason, "primary down");

    // A stale proposal (based on epoch 0) cannot flip it back.
    let stale = a.switch("g", 0, "primary", "pod-a", "stale").await.unwrap();
    assert!(
        matches!(stale, Switch::Lost(ref r) if r.epoch == 1 && r.active_cluster == "secondary"),
        "{stale:?}"
    );

    // Checkpoints are fenced by epoch too.
    let offsets = BTreeMap::from([("t/0".to_string(), 42), ("t/1".to_string(), 7)]);
    let stamps = BTreeMap::from([("t/0".to_string(), 1_700_000_000_123)]);
    assert!(
        !a.checkpoint("g", 0, &offsets, &stamps).await.unwrap(),
        "stale epoch"
    );
    assert!(a.checkpoint("g", 1, &offsets, &stamps).await.unwrap());
    let r = b.read("g").await.unwrap().unwrap();
    assert_eq!(r.checkpoint, offsets);
    assert_eq!(r.checkpoint_ts, stamps);
    assert!(r.checkpoint_at_ms.is_some());

    // Failback is the same move in reverse, from the current epoch.
    let back = b
        .switch("g", 1, "primary", "pod-b", "planned failback")
        .await
        .unwrap();
    assert!(
        matches!(back, Switch::Won(ref r) if r.epoch == 2 && r.active_cluster == "primary"),
        "{back:?}"
    );
    assert_eq!(
        b.read("g").await.unwrap().unwrap().checkpoint,
        offsets,
        "kept"
    );
}
