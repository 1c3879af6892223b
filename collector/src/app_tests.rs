//! The pipeline against its queues: what reaches the store's writer, and in what form.

use super::*;
use crate::engine::{Policy, Snapshot};
use tocsin_protocol::{NodeKind, Report};

/// The writer skips a report's node row that brings nothing new, so at shutdown the
/// pipeline hands it every node's row once more: the next start resumes from exact
/// sequences.
#[tokio::test]
async fn at_shutdown_the_pipeline_writes_every_nodes_row() {
    let mut engine = Engine::new(Policy::default(), Vec::new(), Snapshot::default());
    for (seq, node) in [(4, "web-01"), (5, "web-01"), (9, "db-01")] {
        let report = Report {
            v: 1,
            node: node.into(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq,
            ts: 1_000 * seq as i64,
            interval_s: 10,
            via: None,
            metrics: vec![],
            checks: vec![],
        };
        engine.handle(1_000 * seq as i64, Input::Report(Box::new(report)));
    }
    let (_in_tx, in_rx) = mpsc::channel::<Received>(1);
    let (_control_tx, control_rx) = mpsc::channel::<Control>(1);
    let (write_tx, mut write_rx) = mpsc::channel::<WriteMsg<AckToken>>(8);
    let (targets, _) = watch::channel(Arc::new(NotifyPolicy::default()));
    let (shutdown, stop) = broadcast::channel(1);
    shutdown.send(()).expect("a receiver");
    pipeline(
        engine,
        in_rx,
        control_rx,
        write_tx,
        targets,
        Arc::new(Metrics::default()),
        stop,
    )
    .await;
    let msg = write_rx.recv().await.expect("the nodes' rows");
    let mut seqs: Vec<(String, Option<u64>)> = msg
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Node(n) => Some((n.node.to_string(), n.last_seq)),
            _ => None,
        })
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        [
            ("db-01".to_string(), Some(9)),
            ("web-01".to_string(), Some(5))
        ]
    );
    assert!(msg.ack.is_none());
    assert!(write_rx.recv().await.is_none(), "nothing after them");
}

/// A report reaches the store's writer as the text it came in, not decoded; a status
/// carries no report.
#[tokio::test]
async fn a_report_goes_to_the_writer_as_its_text() {
    let engine = Engine::new(Policy::default(), Vec::new(), Snapshot::default());
    let (in_tx, in_rx) = mpsc::channel::<Received>(4);
    let (_control_tx, control_rx) = mpsc::channel::<Control>(1);
    let (write_tx, mut write_rx) = mpsc::channel::<WriteMsg<AckToken>>(8);
    let (targets, _) = watch::channel(Arc::new(NotifyPolicy::default()));
    let (_shutdown, stop) = broadcast::channel(1);
    let (decoded_tx, decoded_rx) = mpsc::channel::<Inbound>(4);
    // The decode stage, as `start` runs it, between intake and the pipeline.
    let (_stop_stage, stage_stop) = broadcast::channel(1);
    let stage = tokio::spawn(stage::run("tocsin".into(), decoded_rx, in_tx, stage_stop));
    let text = r#"{ "v": 1, "node": "web-01", "site": "dc1", "seq": 3, "ts": 1000,
        "metrics": [ { "name": "fs.used_pct", "labels": { "mount": "/" }, "value": 42.0 } ] }"#;
    // A field tocsin does not read, with an escape DuckDB's JSON refuses: stored decoded.
    let lone = r#"{"v":1,"node":"web-01","site":"dc1","seq":4,"ts":2000,"note":"\ud800"}"#;
    for (topic, payload) in [
        ("tocsin/v1/dc1/web-01/report", text),
        (
            "tocsin/v1/dc1/web-01/status",
            r#"{"v":1,"state":"offline"}"#,
        ),
        ("tocsin/v1/dc1/web-01/report", lone),
    ] {
        decoded_tx
            .send(Inbound {
                received_at: 5_000,
                topic: topic.into(),
                payload: bytes::Bytes::from(payload.to_string()),
                ack: None,
            })
            .await
            .expect("the stage takes it");
    }
    drop(decoded_tx);
    let pipe = tokio::spawn(pipeline(
        engine,
        in_rx,
        control_rx,
        write_tx,
        targets,
        Arc::new(Metrics::default()),
        stop,
    ));
    let reports = |msg: &WriteMsg<AckToken>| -> Vec<Option<ReportBody>> {
        msg.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Node(n) => Some(n.last_report.clone()),
                _ => None,
            })
            .collect()
    };
    let first = write_rx.recv().await.expect("the report's effects");
    assert_eq!(reports(&first), [Some(ReportBody::Json(text.into()))]);
    let second = write_rx.recv().await.expect("the status's effects");
    assert_eq!(reports(&second), [None]);
    let third = write_rx.recv().await.expect("the second report's effects");
    assert!(
        matches!(reports(&third).as_slice(), [Some(ReportBody::Decoded(r))] if r.seq == 4),
        "{:?}",
        reports(&third)
    );
    stage.await.expect("the stage ends with intake");
    pipe.await.expect("the pipeline ends with the stage");
}
