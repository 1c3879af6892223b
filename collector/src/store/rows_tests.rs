//! Staged writes of a batch's rows: a burst stored exactly as emitted, outbox marks folded per notification.

use std::collections::BTreeMap;

use tocsin_protocol::CheckStatus;

use super::tests::{engine, node_report, scope, write};
use super::{OutboxUpdate, Outcome, Store};
use crate::engine::{Effect, Snapshot};

fn count(store: &mut Store, sql: &str) -> i64 {
    store
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .expect(sql)
}

/// The rows of a burst, one batch, read back as a restarted engine sees them: equal to
/// the last version of each row the engine emitted, times and JSON columns included.
#[test]
fn a_burst_of_incidents_is_stored_in_one_batch_exactly_as_emitted() {
    const N: usize = 150;
    let mut store = Store::open_in_memory().expect("store");
    let mut e = engine(Snapshot::default());
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend(
            e.handle(
                10_000,
                node_report(&format!("web-{i:03}"), 1, 10_000, CheckStatus::Critical),
            )
            .effects,
        );
    }
    write(&mut store, &batch);
    for table in ["incidents", "tickets", "incident_alerts"] {
        let n = count(&mut store, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(n, N as i64, "{table}");
    }
    assert!(count(&mut store, "SELECT count(*) FROM alerts") >= N as i64);
    assert!(count(&mut store, "SELECT count(*) FROM ticket_events") >= N as i64);

    // A second batch changes every incident (resolved): the staged upsert replaces rows.
    let mut batch2 = Vec::new();
    for i in 0..N {
        batch2.extend(
            e.handle(
                20_000,
                node_report(&format!("web-{i:03}"), 2, 20_000, CheckStatus::Ok),
            )
            .effects,
        );
    }
    write(&mut store, &batch2);
    assert_eq!(
        count(&mut store, "SELECT count(*) FROM incidents"),
        N as i64
    );

    let last = |pick: &dyn Fn(&Effect) -> Option<(i64, String)>| {
        let mut m = BTreeMap::new();
        for e in batch.iter().chain(&batch2) {
            if let Some((id, row)) = pick(e) {
                m.insert(id, row);
            }
        }
        m.into_values().collect::<Vec<_>>()
    };
    let incidents = last(&|e| match e {
        Effect::Incident(i) => Some((i.id, format!("{i:?}"))),
        _ => None,
    });
    let tickets = last(&|e| match e {
        Effect::Ticket(t) => Some((t.id, format!("{t:?}"))),
        _ => None,
    });
    let snap = store.snapshot(scope(30_000)).expect("snapshot");
    let mut got: Vec<_> = snap
        .incidents
        .iter()
        .map(|i| (i.id, format!("{i:?}")))
        .collect();
    got.sort();
    assert_eq!(got.len(), N, "every incident is still open (verifying)");
    assert_eq!(
        got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        incidents
    );
    let mut got: Vec<_> = snap
        .tickets
        .iter()
        .map(|t| (t.id, format!("{t:?}")))
        .collect();
    got.sort();
    assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), tickets);
}

/// Several marks of one notification in a batch end as applying them one by one would.
#[test]
fn outbox_marks_of_one_batch_fold_per_notification() {
    let mut store = Store::open_in_memory().expect("store");
    let row = |id: i64| crate::engine::model::NotificationRow {
        id,
        key: format!("INC-1:{id}:ops"),
        channel: "webhook".into(),
        target: "ops".into(),
        event: "ticket.opened".into(),
        ticket_id: Some(1),
        payload: serde_json::json!({"n": id}),
        created_at: 1_000,
    };
    write(
        &mut store,
        &[
            Effect::Notification(Box::new(row(1))),
            Effect::Notification(Box::new(row(2))),
        ],
    );
    let updates = [
        OutboxUpdate {
            id: 1,
            attempts: 1,
            last_error: Some("HTTP 503".into()),
            outcome: Outcome::Retry {
                next_attempt_at: 5_000,
            },
        },
        OutboxUpdate {
            id: 2,
            attempts: 1,
            last_error: Some("refused".into()),
            outcome: Outcome::Failed { at: 2_000 },
        },
        OutboxUpdate {
            id: 1,
            attempts: 2,
            last_error: None,
            outcome: Outcome::Delivered { at: 6_000 },
        },
    ];
    let tx = store.connection().transaction().expect("tx");
    let changed = super::outbox::apply_updates(&tx, &updates).expect("marks");
    tx.commit().expect("commit");
    assert_eq!(changed, 2);
    let reader = store.reader().expect("reader");
    let one = reader.notification_row(1).expect("row").expect("1");
    assert_eq!(one["state"], "delivered");
    assert_eq!(one["attempts"], 2);
    assert_eq!(one["last_error"], "HTTP 503");
    assert_eq!(one["next_attempt_at"], crate::time::rfc3339(5_000));
    assert_eq!(one["sent_at"], crate::time::rfc3339(6_000));
    assert_eq!(one["failed_at"], serde_json::Value::Null);
    let two = reader.notification_row(2).expect("row").expect("2");
    assert_eq!(two["state"], "failed");
    assert_eq!(two["last_error"], "refused");
    assert_eq!(two["failed_at"], crate::time::rfc3339(2_000));
}
