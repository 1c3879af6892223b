//! Node rows: staged and upserted per batch, written in full or only their narrow columns;
//! full reports appended to `node_reports` and pruned to the newest per node.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use duckdb::{Transaction, params};
use rustc_hash::FxHashMap;

use super::StoreError;
use super::rows::json;
use crate::engine::model::{NodeInventory, NodeRow, ReportBody};
use crate::time::Millis;

/// The per-connection staging table node rows are appended to before the batch's upserts.
const NODES_STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS nodes_stage (
    site VARCHAR, node VARCHAR, kind VARCHAR, state VARCHAR, agent_version VARCHAR,
    inventory VARCHAR, labels VARCHAR, parents VARCHAR, via VARCHAR, last_seq UBIGINT,
    last_ts BIGINT, last_report_at BIGINT, last_report VARCHAR, state_changed_at BIGINT,
    first_seen BIGINT, updated_at BIGINT, full_row BOOLEAN)";

/// The node columns as inserted from the staging table (the same for both upserts).
const NODES_FROM_STAGE: &str = "INSERT INTO nodes (site, node, kind, state, agent_version, inventory,
        labels, parents, via, last_seq, last_ts, last_report_at, state_changed_at,
        first_seen, updated_at)
    SELECT site, node, kind, state, agent_version, inventory::JSON, labels::JSON, parents::JSON, via,
        last_seq, epoch_ms(last_ts), epoch_ms(last_report_at),
        epoch_ms(state_changed_at), epoch_ms(first_seen), epoch_ms(updated_at)
    FROM temp.main.nodes_stage";

/// The staged rows that carry a report to keep, appended (never updated: see the migration).
const REPORTS_FROM_STAGE: &str = "INSERT INTO node_reports (site, node, report_at, seq, report)
    SELECT site, node, epoch_ms(coalesce(last_report_at, updated_at)), last_seq, last_report::JSON
    FROM temp.main.nodes_stage WHERE last_report IS NOT NULL";

/// Every stored report but the newest of its node.
const PRUNE_REPORTS: &str = "DELETE FROM node_reports r
    USING (SELECT site, node, max(report_at) AS newest FROM node_reports GROUP BY site, node) n
    WHERE r.site = n.site AND r.node = n.node AND r.report_at < n.newest";

/// How far behind the end of the table (in rows: two of DuckDB's row groups of 122,880) a
/// kept report may sit before the prune copies it to the end.
const MOVE_BEHIND_ROWS: i64 = 2 * 122_880;

/// Delete every stored report but the newest of each node, in a transaction of its own;
/// returns how many went. The writer calls it about once a minute: a node's report is appended
/// at most once a `report_interval`, so the table holds a few rows per node.
///
/// The store sets DuckDB's `max_vacuum_tasks` to 0, so a checkpoint drops the row groups whose
/// rows are all deleted and rewrites no other: merging the partly deleted ones rewrote, after
/// every prune, the 50,000 newest reports at 50,000 nodes (100 MB of JSON, over a second
/// inside a commit that tickets waited behind; BENCHMARKS.md). A kept report far behind the
/// end of the table (a node that went quiet) would pin its row group for good, so it is
/// copied to the end and the old copy deleted; it moves again only once as many rows were
/// appended after it, so a fleet that went quiet all at once is not copied every minute.
pub(super) fn prune_reports(conn: &mut duckdb::Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let n = tx.prepare_cached(PRUNE_REPORTS)?.execute([])?;
    let last_row: Option<i64> = tx
        .prepare_cached("SELECT max(rowid) FROM node_reports")?
        .query_row([], |r| r.get(0))?;
    let behind = last_row.map_or(0, |last| last - MOVE_BEHIND_ROWS);
    if behind > 0 {
        let moved = tx
            .prepare_cached(
                "INSERT INTO node_reports SELECT site, node, report_at, seq, report
                 FROM node_reports WHERE rowid < ?",
            )?
            .execute(params![behind])?;
        if moved > 0 {
            tx.prepare_cached("DELETE FROM node_reports WHERE rowid < ?")?
                .execute(params![behind])?;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// What the store holds of a node, as this writer last committed it: 32 bytes.
#[derive(Debug, Clone, Copy)]
pub struct NodeMark {
    /// [`columns_hash`] of the stored wide columns.
    columns: u64,
    /// `last_report_at` of the stored report.
    report_at: Option<Millis>,
    /// `state_changed_at` of the stored row: a state change is written at once.
    state_changed_at: Millis,
}

impl NodeMark {
    fn of(n: &NodeRow, columns: u64, report_at: Option<Millis>) -> Self {
        NodeMark {
            columns,
            report_at,
            state_changed_at: n.state_changed_at,
        }
    }
}

/// A hash of a node row's wide columns (kind, version, route, inventory, labels, parents):
/// whether they changed since the row was written, without keeping a copy of them. Two
/// different sets of columns with the same hash would leave the stored ones as they were
/// until the node's next change (a chance of 2^-64 per change; SipHash, not FxHash, so that
/// similar texts do not collide more often than that).
fn columns_hash(n: &NodeRow) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    n.kind.hash(&mut h);
    n.agent_version.hash(&mut h);
    n.via.hash(&mut h);
    n.inventory.hash(&mut h);
    n.labels.hash(&mut h);
    n.parents.hash(&mut h);
    h.finish()
}

/// The writer's record of what it committed per node, which decides whether a node row is
/// written in full, only its times, sequence and state, or not at all.
///
/// DuckDB rewrites (and recompresses) every column an update touched at each checkpoint, so
/// storing each node's 2 KB report on every report kept it recompressing the whole column
/// at 5,000 reports/s. Now a row is full only when the node is new to this writer or its
/// kind, version, route, inventory, labels or parents changed; otherwise it updates state,
/// sequence and times. The report goes to `node_reports`, appended, when the node is new to
/// this writer, when the stored one is `report_interval` old, or when one of its alerts
/// changed state in the same batch (the report that shows why is kept). Nodes are never
/// deleted from the table, so a node this writer stored is there for the light rows.
///
/// A report that brings nothing of the above (no report due, same state, same columns) is
/// not written at all: the row's times and sequence are stored with the node's next stored
/// report, state change or status, so they are at most `report_interval` behind the engine.
/// Upserting every node's row on every report was 5,000 DuckDB updates a second at 50,000
/// nodes, six times what the due reports need (BENCHMARKS.md). At shutdown the collector
/// writes every node's row once more, so a restart resumes from exact sequences.
///
/// The record is one [`NodeMark`] per node under its site and name, looked up by `&str`:
/// it kept a copy of the row's names, version and route per node (10.5 MB at 50,000 nodes,
/// the writer's largest part; BENCHMARKS.md, 2026-12-03 evening), and built a key for every
/// report.
#[derive(Debug)]
pub struct StoredNodes {
    /// Site -> node -> mark.
    /// The names are the engine's (`NodeRow::site`, `NodeRow::node`), shared.
    marks: FxHashMap<Arc<str>, FxHashMap<Arc<str>, NodeMark>>,
    report_every: Millis,
    /// Spread each node's reports over the interval (see [`StoredNodes::set_spread`]).
    spread: bool,
}

impl StoredNodes {
    pub fn new(report_every: Duration) -> Self {
        let mut stored = StoredNodes {
            marks: FxHashMap::default(),
            report_every: 0,
            spread: false,
        };
        stored.set_report_every(report_every);
        stored
    }

    /// Store a node's full report at most every `every` (zero: every report).
    pub fn set_report_every(&mut self, every: Duration) {
        self.report_every = Millis::try_from(every.as_millis()).unwrap_or(Millis::MAX);
    }

    /// Spread the nodes' stored reports over the interval. A writer stores the first report
    /// of every node it has not stored yet, so after a start all nodes' reports would come due
    /// in the same few seconds of every interval: at 50,000 nodes, 100 MB of reports at once,
    /// and DuckDB checkpointing every second or two inside the commits meanwhile. Each node's
    /// first stored report counts as older by a fixed share of the interval (from a hash of
    /// its name), so the next ones come due evenly over the interval.
    pub fn set_spread(&mut self, spread: bool) {
        self.spread = spread;
    }

    /// How much older than it is a node's first stored report counts.
    fn offset(&self, n: &NodeRow) -> Millis {
        if !self.spread || self.report_every <= 0 || self.report_every == Millis::MAX {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&(&n.site, &n.node), &mut h);
        let every = u64::try_from(self.report_every).unwrap_or(1).max(1);
        Millis::try_from(std::hash::Hasher::finish(&h) % every).unwrap_or(0)
    }

    /// How `n`'s row is written and the node's mark once committed; `None`: not at all
    /// (a report that brings nothing new). `alerted`: one of the node's alerts changed state
    /// in this batch. A row without a report (a status, or the shutdown's rows) is always
    /// written.
    fn plan(&self, n: &NodeRow, report: Option<&ReportBody>, alerted: bool) -> Option<Planned> {
        let columns = columns_hash(n);
        let found = self
            .marks
            .get(&*n.site)
            .and_then(|nodes| nodes.get(&*n.node));
        let Some(mark) = found else {
            let stored_report = report.is_some();
            let at = n
                .last_report_at
                .filter(|_| stored_report)
                .map(|t| t - self.offset(n));
            return Some(Planned {
                full: true,
                with_report: stored_report,
                mark: NodeMark::of(n, columns, at),
            });
        };
        let report_due = report.is_some()
            && (alerted
                || match (mark.report_at, n.last_report_at) {
                    (Some(stored), Some(now)) => now - stored >= self.report_every,
                    _ => true,
                });
        let full = mark.columns != columns;
        if report.is_some() && !report_due && !full && mark.state_changed_at == n.state_changed_at {
            return None;
        }
        let report_at = if report_due {
            n.last_report_at
        } else {
            mark.report_at
        };
        Some(Planned {
            full,
            with_report: report_due,
            mark: NodeMark::of(n, columns, report_at),
        })
    }

    /// Take the marks of a committed batch.
    pub(super) fn record(&mut self, marks: Marks) {
        for ((site, node), mark) in marks {
            let nodes = match self.marks.get_mut(&*site) {
                Some(nodes) => nodes,
                None => self.marks.entry(site).or_default(),
            };
            match nodes.get_mut(&*node) {
                Some(m) => *m = mark,
                None => {
                    nodes.insert(node, mark);
                }
            }
        }
    }

    /// How many nodes the record holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.marks.values().map(|nodes| nodes.len()).sum()
    }
}

/// Node marks of a batch, recorded once it committed.
pub(super) type Marks = Vec<((Arc<str>, Arc<str>), NodeMark)>;

/// How one node row of a batch is written.
#[derive(Debug)]
struct Planned {
    /// Every column, or only state, sequence and times.
    full: bool,
    /// The report is appended to `node_reports`.
    with_report: bool,
    mark: NodeMark,
}

/// Upsert a batch's node rows (one per node, with the newest report the batch carried).
/// `alerted`: nodes with an alert transition in the batch. Without `stored`, every row is full.
pub(super) fn write_nodes(
    tx: &Transaction<'_>,
    nodes: &BTreeMap<(&str, &str), (&NodeRow, Option<&ReportBody>)>,
    alerted: &HashSet<(&str, &str)>,
    stored: Option<&StoredNodes>,
) -> Result<(usize, Marks), StoreError> {
    let mut marks = Vec::new();
    // What is written of each node: (row, its report if stored, full row).
    let mut planned = Vec::with_capacity(nodes.len());
    for (key, (n, report)) in nodes {
        match stored {
            Some(stored) => {
                if let Some(p) = stored.plan(n, *report, alerted.contains(key)) {
                    marks.push(((Arc::clone(&n.site), Arc::clone(&n.node)), p.mark));
                    planned.push((*n, report.filter(|_| p.with_report), p.full));
                }
            }
            None => planned.push((*n, *report, true)),
        }
    }
    if planned.is_empty() {
        return Ok((0, marks));
    }
    // Rows appended to a staging table, then upserted by two statements for the batch
    // (full rows, light rows). Row by row, DuckDB's INSERT OR REPLACE cost about 10 ms
    // a node (a statement execution each, every column vector allocated and cleared),
    // which held the whole collector to ~100 reports/s (BENCHMARKS.md).
    tx.prepare_cached(NODES_STAGE)?.execute([])?;
    let (mut full_rows, mut light_rows, mut reports) = (0, 0, 0);
    {
        let mut app = tx.appender_to_catalog_and_db("nodes_stage", "temp", "main")?;
        for &(n, report, full) in &planned {
            if full {
                full_rows += 1;
            } else {
                light_rows += 1;
            }
            if report.is_some() {
                reports += 1;
            }
            app.append_row(params![
                &*n.site,
                &*n.node,
                n.kind.as_str(),
                n.state.as_str(),
                n.agent_version.as_deref(),
                n.inventory
                    .as_ref()
                    .filter(|_| full)
                    .map(NodeInventory::to_json),
                // A light row's wide columns are not written: not serialised either.
                Some(&*n.labels).filter(|_| full).and_then(json),
                Some(&*n.parents).filter(|_| full).and_then(json),
                n.via,
                n.last_seq,
                n.last_ts,
                n.last_report_at,
                report.and_then(ReportBody::json),
                n.state_changed_at,
                n.first_seen,
                n.updated_at,
                full,
            ])?;
        }
        app.flush()?;
    }
    // Prepared once per connection: DuckDB's parser is a good part of a small batch's cost.
    if full_rows > 0 {
        tx.prepare_cached(&format!(
            "{NODES_FROM_STAGE} WHERE full_row
             ON CONFLICT (site, node) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                 agent_version = excluded.agent_version, inventory = excluded.inventory,
                 labels = excluded.labels, parents = excluded.parents, via = excluded.via,
                 last_seq = excluded.last_seq, last_ts = excluded.last_ts,
                 last_report_at = excluded.last_report_at,
                 state_changed_at = excluded.state_changed_at, first_seen = excluded.first_seen,
                 updated_at = excluded.updated_at"
        ))?
        .execute([])?;
    }
    if light_rows > 0 {
        // Only the narrow columns: the wide ones stay as stored, untouched.
        tx.prepare_cached(&format!(
            "{NODES_FROM_STAGE} WHERE NOT full_row
             ON CONFLICT (site, node) DO UPDATE SET state = excluded.state,
                 last_seq = excluded.last_seq, last_ts = excluded.last_ts,
                 last_report_at = excluded.last_report_at,
                 state_changed_at = excluded.state_changed_at, updated_at = excluded.updated_at"
        ))?
        .execute([])?;
    }
    if reports > 0 {
        tx.prepare_cached(REPORTS_FROM_STAGE)?.execute([])?;
    }
    tx.prepare_cached("DELETE FROM temp.main.nodes_stage")?
        .execute([])?;
    Ok((planned.len(), marks))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tocsin_protocol::CheckStatus;

    use super::super::tests::{birth, engine, report};
    use super::super::{Reader, Store, Writer};
    use crate::engine::{Engine, Input, Snapshot};

    const EVERY: Duration = Duration::from_secs(60);

    /// (last_seq, the stored report's seq, its check status, the stored inventory's hostname)
    fn stored(reader: &Reader) -> (i64, i64, String, String) {
        let nodes = reader.nodes().expect("nodes");
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        (
            n["last_seq"].as_i64().expect("last_seq"),
            n["last_report"]["seq"].as_i64().expect("report"),
            n["last_report"]["checks"][0]["status"]
                .as_str()
                .expect("status")
                .to_string(),
            n["inventory"]["hostname"]
                .as_str()
                .expect("inventory")
                .to_string(),
        )
    }

    fn send(w: &mut Writer, e: &mut Engine, at: i64, seq: u64, status: CheckStatus) {
        let out = e.handle(at, report(seq, at, status));
        w.commit(&out.effects, &[], &[]).expect("commit");
    }

    /// The report is stored when the node is new to the writer, when one of its alerts changed
    /// state, or once the stored one is `report_interval` old; the row's sequence and times
    /// with it, and with every state change or status. A report that brings nothing new is
    /// not written at all, and the shutdown's rows catch the sequence up. The wide columns a
    /// light row skips stay as they were.
    #[test]
    fn the_full_report_is_stored_on_news_or_once_an_interval() {
        let store = Store::open_in_memory().expect("store");
        let reader = store.reader().expect("reader");
        let second = store.clone_connection().expect("connection");
        let third = store.clone_connection().expect("connection");
        let mut w = store
            .into_writer(&crate::config::StoreConfig {
                report_interval: EVERY,
                ..Default::default()
            })
            .with_report_spread(false);
        let mut e = engine(Snapshot::default());
        let out = e.handle(1_000, birth());
        w.commit(&out.effects, &[], &[]).expect("birth");
        let state = |reader: &Reader| reader.nodes().expect("nodes")[0]["state"].clone();

        // (time, seq, check status; None: the agent's last will) -> (last_seq, stored
        // report's seq, its status), the node's state
        let steps = [
            (10_000, 1, Some(CheckStatus::Ok), (1, 1, "ok"), "online"), // the first report
            (20_000, 2, Some(CheckStatus::Ok), (1, 1, "ok"), "online"), // nothing new
            (
                30_000,
                3,
                Some(CheckStatus::Critical),
                (3, 3, "critical"),
                "online",
            ), // fires
            (
                40_000,
                4,
                Some(CheckStatus::Critical),
                (3, 3, "critical"),
                "online",
            ), // still
            (
                89_000,
                5,
                Some(CheckStatus::Critical),
                (3, 3, "critical"),
                "online",
            ), // 59 s
            (
                90_000,
                6,
                Some(CheckStatus::Critical),
                (6, 6, "critical"),
                "online",
            ), // 60 s: due
            (100_000, 7, Some(CheckStatus::Ok), (7, 7, "ok"), "online"), // the alert resolves
            (101_000, 7, None, (7, 7, "ok"), "offline"),                // a status: written
            (110_000, 8, Some(CheckStatus::Ok), (8, 7, "ok"), "online"), // back: light row
            (120_000, 9, Some(CheckStatus::Ok), (8, 7, "ok"), "online"), // nothing new
        ];
        for (at, seq, status, want, want_state) in steps {
            let input = match status {
                Some(status) => report(seq, at, status),
                None => super::super::tests::status(tocsin_protocol::NodeState::Offline),
            };
            let out = e.handle(at, input);
            w.commit(&out.effects, &[], &[]).expect("commit");
            let (last_seq, report_seq, report_status, host) = stored(&reader);
            assert_eq!(
                (last_seq, report_seq, report_status.as_str()),
                want,
                "after seq {seq} at {at}"
            );
            assert_eq!(state(&reader), want_state, "at {at}");
            assert_eq!(
                host, "web-01",
                "a light row keeps the inventory (seq {seq})"
            );
        }
        // The shutdown's rows: the engine's sequence, the stored report as it was.
        w.commit(&e.node_rows(), &[], &[]).expect("shutdown rows");
        assert_eq!(stored(&reader).0, 9);
        assert_eq!(stored(&reader).1, 7);

        // Another writer (a restart) does not know what is stored: its first row is full.
        let mut w2 =
            Writer::new(second, 512, Duration::from_millis(200)).with_report_interval(EVERY);
        send(&mut w2, &mut e, 130_000, 10, CheckStatus::Ok);
        assert_eq!(stored(&reader).1, 10);
        send(&mut w2, &mut e, 140_000, 11, CheckStatus::Ok);
        assert_eq!(stored(&reader).0, 10, "nothing new: not written");
        assert_eq!(stored(&reader).1, 10);

        // `report_interval = 0` stores every report.
        let mut every = Writer::new(third, 512, Duration::from_millis(200));
        send(&mut every, &mut e, 150_000, 12, CheckStatus::Ok);
        send(&mut every, &mut e, 160_000, 13, CheckStatus::Ok);
        assert_eq!(stored(&reader).0, 13);
        assert_eq!(stored(&reader).1, 13);
    }

    /// A report that came as text is stored as that text: the writer does not serialise it
    /// again, and what the agent sent beyond the fields tocsin reads is kept.
    #[test]
    fn a_report_text_is_stored_as_it_came() {
        let store = Store::open_in_memory().expect("store");
        let reader = store.reader().expect("reader");
        let mut w = Writer::new(
            store.clone_connection().expect("connection"),
            512,
            Duration::from_millis(200),
        );
        let mut e = engine(Snapshot::default());
        let out = e.handle(1_000, birth());
        w.commit(&out.effects, &[], &[]).expect("birth");
        let mut out = e.handle(10_000, report(1, 10_000, CheckStatus::Ok));
        let text: std::sync::Arc<str> = r#"{"v":1, "node":"web-01", "site":"dc1", "seq":1,
            "ts":10000, "extension":{"from":"a newer agent"}}"#
            .into();
        for effect in &mut out.effects {
            if let crate::engine::Effect::Node(n) = effect {
                n.last_report = Some(super::ReportBody::Json(text.clone()));
            }
        }
        w.commit(&out.effects, &[], &[]).expect("commit");
        let nodes = reader.nodes().expect("nodes");
        assert_eq!(nodes[0]["last_report"]["seq"], 1);
        assert_eq!(
            nodes[0]["last_report"]["extension"]["from"],
            "a newer agent"
        );
    }

    /// A restarted agent's birth with the same inventory, labels and parents rewrites no
    /// wide column: the engine keeps the inventory's shared text, so the writer plans a light
    /// row. A changed inventory is a full row.
    #[test]
    fn an_equal_birth_is_a_light_row_and_a_new_inventory_a_full_one() {
        let row_of = |effects: &[crate::engine::Effect]| -> super::NodeRow {
            effects
                .iter()
                .find_map(|e| match e {
                    crate::engine::Effect::Node(n) => Some((**n).clone()),
                    _ => None,
                })
                .expect("a node row")
        };
        let mut e = engine(Snapshot::default());
        let mut stored = super::StoredNodes::new(EVERY);
        let plan = |stored: &mut super::StoredNodes, row: &super::NodeRow| {
            let p = stored
                .plan(row, None, false)
                .expect("a status is always written");
            stored.record(vec![(
                (Arc::clone(&row.site), Arc::clone(&row.node)),
                p.mark,
            )]);
            p.full
        };
        let first = row_of(&e.handle(1_000, birth()).effects);
        assert!(plan(&mut stored, &first), "new to the writer: full");
        let again = row_of(&e.handle(2_000, birth()).effects);
        assert!(!plan(&mut stored, &again), "the same birth: light");

        let Input::Status { mut status, .. } = birth() else {
            panic!("a birth is a status");
        };
        if let Some(inv) = status.inventory.as_mut() {
            inv.os_version = Some("13".into());
        }
        let input = Input::Status {
            site: "dc1".into(),
            node: "web-01".into(),
            status,
        };
        let changed = row_of(&e.handle(3_000, input).effects);
        assert!(plan(&mut stored, &changed), "a new inventory: full");

        // Equal columns in values of their own (a row restored from a snapshot): light.
        let mut copy = changed.clone();
        copy.labels = std::sync::Arc::new((*changed.labels).clone());
        copy.parents = std::sync::Arc::new((*changed.parents).clone());
        copy.inventory = changed
            .inventory
            .as_ref()
            .map(|i| crate::engine::NodeInventory::new(&i.decode()));
        assert!(!plan(&mut stored, &copy), "equal columns: light");
        // Each wide column on its own makes a full row.
        type Change = (&'static str, fn(&mut super::NodeRow));
        let changes: [Change; 5] = [
            ("kind", |n| n.kind = tocsin_protocol::NodeKind::Network),
            ("agent version", |n| n.agent_version = Some("9.9.9".into())),
            ("route", |n| n.via = Some("sw-01".into())),
            ("labels", |n| {
                n.labels = std::sync::Arc::new([("rack".into(), "r9".into())].into())
            }),
            ("parents", |n| {
                n.parents = std::sync::Arc::new(vec!["sw-09".into()])
            }),
        ];
        for (what, change) in changes {
            let mut row = copy.clone();
            change(&mut row);
            assert!(plan(&mut stored, &row), "a new {what}: full");
            assert!(!plan(&mut stored, &row), "the same {what} again: light");
        }
        // One mark per node, replaced in place; a second node and site get their own.
        let mut other = copy.clone();
        other.site = "dc2".into();
        assert!(plan(&mut stored, &other), "another site's node: full");
        assert_eq!(stored.len(), 2);
        assert_eq!(std::mem::size_of::<super::NodeMark>(), 32);
    }

    /// Reports are appended to `node_reports`, never updated; pruning keeps each node's
    /// newest, and `v_nodes` (what `GET /api/v1/nodes` reads) shows it.
    #[test]
    fn reports_are_appended_and_pruned_to_the_newest_of_each_node() {
        let mut store = Store::open_in_memory().expect("store");
        let reader = store.reader().expect("reader");
        let mut w = Writer::new(
            store.clone_connection().expect("connection"),
            512,
            Duration::from_millis(200),
        );
        let mut e = engine(Snapshot::default());
        let out = e.handle(1_000, birth());
        w.commit(&out.effects, &[], &[]).expect("birth");
        for (at, seq) in [(10_000, 1), (20_000, 2), (30_000, 3)] {
            for node in ["web-01", "web-02"] {
                let mut input = report(seq, at, CheckStatus::Ok);
                if let crate::engine::Input::Report(r) = &mut input {
                    r.node = node.into();
                    // web-02 sends seq 11, 12, 13: its rows are told apart from web-01's.
                    r.seq += if node == "web-02" { 10 } else { 0 };
                }
                let out = e.handle(at, input);
                w.commit(&out.effects, &[], &[]).expect("commit");
            }
        }
        let rows = |store: &mut Store| -> Vec<(String, u64)> {
            let mut stmt = store
                .connection()
                .prepare("SELECT node, seq FROM node_reports ORDER BY node, seq")
                .expect("prepare");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect()
        };
        assert_eq!(rows(&mut store).len(), 6, "every report appended");
        assert_eq!(super::prune_reports(store.connection()).expect("prune"), 4);
        assert_eq!(
            rows(&mut store),
            [("web-01".to_string(), 3), ("web-02".to_string(), 13)]
        );
        let nodes = reader.nodes().expect("nodes");
        let seqs: Vec<_> = nodes
            .iter()
            .map(|n| (n["node"].clone(), n["last_report"]["seq"].clone()))
            .collect();
        assert_eq!(
            seqs,
            [("web-01".into(), 3.into()), ("web-02".into(), 13.into())]
        );
        assert_eq!(super::prune_reports(store.connection()).expect("again"), 0);
    }

    /// A quiet node's newest report, far behind the end of the table, is copied to the end
    /// (its row group can then go whole), and stays the node's one report.
    #[test]
    fn a_quiet_nodes_report_moves_to_the_end_of_the_table() {
        let mut store = Store::open_in_memory().expect("store");
        let conn = store.connection();
        conn.execute_batch(
            "INSERT INTO node_reports VALUES ('dc1', 'quiet', TIMESTAMP '2026-12-01 00:00:00', 1, '{\"seq\":1}');
             INSERT INTO node_reports SELECT 'dc1', 'busy-' || (i % 2),
                 TIMESTAMP '2026-12-01 00:01:00' + to_seconds(i), i, '{}' FROM range(250000) t(i);",
        )
        .expect("rows");
        let quiet = |conn: &duckdb::Connection| -> (i64, i64, String) {
            conn.query_row(
                "SELECT count(*), max(rowid), any_value(report)::VARCHAR FROM node_reports WHERE node = 'quiet'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("quiet")
        };
        assert_eq!(quiet(conn).1, 0, "the first row");
        assert_eq!(super::prune_reports(conn).expect("prune"), 249_998);
        let (count, rowid, report) = quiet(conn);
        assert_eq!((count, report.as_str()), (1, r#"{"seq":1}"#));
        assert!(rowid >= 250_000, "moved to the end: rowid {rowid}");
        let total: i64 = conn
            .query_row("SELECT count(*) FROM node_reports", [], |r| r.get(0))
            .expect("count");
        assert_eq!(total, 3, "quiet, busy-0 and busy-1");
        // Nothing was appended since: it is not copied again.
        assert_eq!(super::prune_reports(conn).expect("again"), 0);
        assert_eq!(quiet(conn).1, rowid);
    }

    /// Stored reports per 10 s window, for 100 nodes reporting every 10 s from the same start.
    fn stored_per_window(spread: bool) -> Vec<i64> {
        let mut store = Store::open_in_memory().expect("store");
        let mut w = Writer::new(
            store.clone_connection().expect("connection"),
            512,
            Duration::from_millis(200),
        )
        .with_report_interval(EVERY)
        .with_report_spread(spread);
        let mut e = engine(Snapshot::default());
        for round in 1..=15u64 {
            let at = round as i64 * 10_000;
            let mut effects = Vec::new();
            for i in 0..100 {
                let mut input = report(round, at, CheckStatus::Ok);
                if let crate::engine::Input::Report(r) = &mut input {
                    r.node = format!("web-{i:03}");
                }
                effects.extend(e.handle(at, input).effects);
            }
            w.commit(&effects, &[], &[]).expect("commit");
        }
        let mut stmt = store
            .connection()
            .prepare(
                "SELECT count(*) FROM node_reports GROUP BY epoch_ms(report_at) // 10000 ORDER BY 1 DESC",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    }

    /// A writer stores every node's first report; without spreading, all 100 nodes' next
    /// reports then come due in the same window of every interval. Spread, they come due
    /// evenly over it.
    #[test]
    fn stored_reports_are_spread_over_the_interval() {
        let lumped = stored_per_window(false);
        // The first round, then all 100 again at 70 s and at 130 s.
        assert_eq!(lumped, [100, 100, 100], "{lumped:?}");
        let spread = stored_per_window(true);
        assert_eq!(spread[0], 100, "the first round: every node is new");
        assert!(
            spread[1..].iter().all(|&n| n <= 40) && spread.len() >= 8,
            "{spread:?}"
        );
        // Still one report per node and interval, give or take the first.
        let after_first: i64 = spread[1..].iter().sum();
        assert!((150..=260).contains(&after_first), "{spread:?}");
    }
}
