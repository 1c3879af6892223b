//! The analytics views over real engine output: every view answers, and its figures match the
//! tickets that made them (docs/ANALYTICS.md defines them).

use std::path::Path;

use tocsin_protocol::{CheckResult, CheckStatus, NodeKind, Report};

use super::*;
use crate::engine::{Command, Effect, Engine, Input, Policy, TicketAction};
use crate::rules::parse_rules;

const RULES: &str = r#"
    [[rule]]
    name = "check_critical"
    check = "*"
    severity = "critical"
    category = "software"
    summary = "{{node}}: {{check}} is {{status}}"
"#;

/// P2 (no criticality label, critical check): acknowledge within 10m, resolve within 1h.
const POLICY: &str = r#"
[incident]
verify_for = "60s"
[sla.P2]
response = "10m"
resolution = "1h"
[[escalation]]
name = "on-duty"
notify = ["webhook:oncall"]
[notify.webhook.oncall]
url = "http://127.0.0.1:9/hook"
"#;

const M: i64 = 60_000;

struct Run {
    store: Store,
    engine: Engine,
    seq: u64,
}

impl Run {
    fn write(&mut self, effects: &[Effect]) {
        let tx = self.store.connection().transaction().expect("tx");
        write_effects(&tx, effects).expect("write");
        tx.commit().expect("commit");
    }

    fn check(&mut self, at: i64, node: &str, status: CheckStatus) {
        self.seq += 1;
        let report = Report {
            v: 1,
            node: node.into(),
            site: "dc1".into(),
            kind: NodeKind::Host,
            seq: self.seq,
            ts: at,
            interval_s: 10,
            via: None,
            metrics: vec![],
            checks: vec![CheckResult {
                name: "tcp:pg".into(),
                status,
                output: String::new(),
                latency_ms: None,
            }],
        };
        let out = self.engine.handle(at, Input::Report(Box::new(report)));
        self.write(&out.effects);
    }

    fn tick(&mut self, at: i64) {
        let out = self.engine.handle(at, Input::Tick);
        self.write(&out.effects);
    }

    fn act(&mut self, at: i64, id: i64, action: TicketAction) {
        let (_, out) = self
            .engine
            .command(
                at,
                Command::Ticket {
                    id,
                    action,
                    actor: "alice".into(),
                    stored: None,
                    history: Vec::new(),
                },
            )
            .expect("command");
        self.write(&out.effects);
    }

    fn rows(&mut self, sql: &str) -> Vec<Vec<duckdb::types::Value>> {
        let conn = self.store.connection();
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("query");
        let mut out = Vec::new();
        while let Some(r) = rows.next().expect("row") {
            out.push((0..n).map(|i| r.get(i).expect("value")).collect());
        }
        out
    }
}

fn int(v: &duckdb::types::Value) -> i64 {
    match v {
        duckdb::types::Value::BigInt(x) => *x,
        duckdb::types::Value::Int(x) => i64::from(*x),
        duckdb::types::Value::HugeInt(x) => i64::try_from(*x).unwrap_or(i64::MAX),
        duckdb::types::Value::Double(x) => *x as i64,
        duckdb::types::Value::Boolean(b) => i64::from(*b),
        other => panic!("not a number: {other:?}"),
    }
}

/// Two tickets over 40 minutes (see the comment inside); the figures every test checks.
fn scenario() -> (Run, i64) {
    let mut r = Run {
        store: Store::open_in_memory().expect("store"),
        engine: Engine::new(
            Policy::from_toml_str(Path::new("p"), POLICY).expect("policy"),
            parse_rules("t", RULES).expect("rules"),
            crate::engine::Snapshot::default(),
        ),
        seq: 0,
    };
    let t0 = 1_796_000_000_000; // 2026-11-30T00:53:20Z
    // web-01: nobody acknowledges for 10 minutes (breach, escalation), then alice does at 12m;
    // it recovers at 30m and closes after verification. db-01: acknowledged after 2m, pending
    // from 5m to 25m, resolved by monitoring at 40m. (Inputs in time order: the engine's
    // clock never runs backwards.)
    r.check(t0, "web-01", CheckStatus::Critical);
    r.check(t0, "db-01", CheckStatus::Critical);
    r.act(t0 + 2 * M, 2, TicketAction::Acknowledge { note: None });
    r.act(
        t0 + 5 * M,
        2,
        TicketAction::Pend {
            reason: "vendor".into(),
        },
    );
    r.tick(t0 + 10 * M);
    r.act(t0 + 12 * M, 1, TicketAction::Acknowledge { note: None });
    r.act(t0 + 25 * M, 2, TicketAction::Resume { note: None });
    r.check(t0 + 30 * M, "web-01", CheckStatus::Ok);
    r.tick(t0 + 32 * M);
    r.check(t0 + 40 * M, "db-01", CheckStatus::Ok);
    (r, t0)
}

#[test]
fn views_answer_with_the_figures_of_the_tickets_behind_them() {
    let (mut r, _) = scenario();
    let sla = r.rows(
        "SELECT number, time_to_ack_ms, time_to_resolve_ms, time_to_resolve_net_ms, response_breached, resolution_breached
         FROM v_ticket_sla ORDER BY ticket_id",
    );
    assert_eq!(sla.len(), 2);
    assert_eq!(int(&sla[0][1]), 12 * M);
    assert_eq!(int(&sla[0][2]), 30 * M);
    assert_eq!(int(&sla[0][3]), 30 * M);
    assert_eq!(int(&sla[0][4]), 1, "response breached");
    assert_eq!(int(&sla[0][5]), 0);
    assert_eq!(int(&sla[1][1]), 2 * M);
    assert_eq!(int(&sla[1][2]), 40 * M);
    assert_eq!(int(&sla[1][3]), 20 * M, "net of the 20 minutes pending");
    assert_eq!(int(&sla[1][4]), 0);

    let m = r.rows(
        "SELECT tickets, acknowledged, resolved, mtta_ms, mttr_ms, mttr_net_ms, response_breached
         FROM v_mtta_mttr WHERE priority = 'P2'",
    );
    assert_eq!(m.len(), 1, "one day, one group: {m:?}");
    assert_eq!(int(&m[0][0]), 2);
    assert_eq!(int(&m[0][3]), 7 * M, "mean of 12m and 2m");
    assert_eq!(int(&m[0][4]), 35 * M);
    assert_eq!(int(&m[0][5]), 25 * M);
    assert_eq!(int(&m[0][6]), 1);

    let daily = r.rows("SELECT incidents, resolved FROM v_incidents_daily");
    assert_eq!(daily.len(), 1);
    assert_eq!((int(&daily[0][0]), int(&daily[0][1])), (2, 2));

    let noisy = r.rows("SELECT node, firing, incidents FROM v_noisy_nodes ORDER BY node");
    assert_eq!(noisy.len(), 2);
    assert_eq!((int(&noisy[0][1]), int(&noisy[0][2])), (1, 1));

    let esc = r.rows("SELECT number, level, level_name, trigger FROM v_escalations");
    assert_eq!(esc.len(), 1);
    assert_eq!(int(&esc[0][1]), 1);
    assert_eq!(esc[0][2], duckdb::types::Value::Text("on-duty".into()));
    assert_eq!(
        esc[0][3],
        duckdb::types::Value::Text("response_breached".into())
    );

    // No problem records yet: the view answers, empty.
    assert!(r.rows("SELECT * FROM v_top_problems").is_empty());
}

#[test]
fn every_view_is_documented_in_analytics_md() {
    let mut store = Store::open_in_memory().expect("store");
    let conn = store.connection();
    let mut stmt = conn
        .prepare("SELECT view_name FROM duckdb_views() WHERE NOT internal AND view_name LIKE 'v\\_%' ESCAPE '\\'")
        .expect("prepare");
    let views: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert!(views.len() >= 6, "{views:?}");
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ANALYTICS.md"))
            .expect("docs/ANALYTICS.md");
    for v in views.iter().filter(|v| *v != "v_alerts_current") {
        assert!(
            doc.contains(&format!("`{v}`")),
            "docs/ANALYTICS.md does not document {v}"
        );
    }
}

#[test]
fn summary_gives_the_headline_figures_in_total_and_by_group() {
    let (r, t0) = scenario();
    let reader = r.store.reader().expect("reader");
    let day = 86_400_000;
    let s = reader
        .summary(SummaryQuery {
            from: t0 - day,
            to: t0 + day,
            group_by: GroupBy::Priority,
        })
        .expect("summary");
    let t = &s.totals;
    assert_eq!(
        (t.incidents, t.tickets, t.acknowledged, t.resolved),
        (2, 2, 2, 2)
    );
    assert_eq!(t.mtta_ms, Some((7 * M) as f64), "mean of 12m and 2m");
    assert_eq!(t.mttr_ms, Some((35 * M) as f64));
    assert_eq!(t.mttr_net_ms, Some((25 * M) as f64));
    assert_eq!((t.response_breached, t.resolution_breached), (1, 0));
    assert_eq!(t.sla_met_pct, Some(50.0), "one of two breached a target");
    assert_eq!(t.escalations, 1);
    assert_eq!(s.groups.len(), 1);
    assert_eq!(s.groups[0].key, "P2");
    assert_eq!(&s.groups[0].figures, t, "one group holds everything");
    assert_eq!(s.group_by, "priority");
    assert_eq!(s.now.open_incidents, 0);
    assert_eq!(s.now.open_tickets, 0, "both resolved or closed");
    assert_eq!(s.now.open_incidents_by_priority.get("P1"), Some(&0));

    let by_day = reader
        .summary(SummaryQuery {
            from: t0 - day,
            to: t0 + day,
            group_by: GroupBy::Day,
        })
        .expect("summary by day");
    assert_eq!(by_day.groups.len(), 1);
    assert_eq!(by_day.groups[0].key, "2026-11-30");
    assert_eq!(by_day.groups[0].figures.incidents, 2);

    let none = reader
        .summary(SummaryQuery {
            from: t0 - day,
            to: t0 + day,
            group_by: GroupBy::None,
        })
        .expect("summary without groups");
    assert!(none.groups.is_empty());
    assert_eq!(none.totals, s.totals);

    // A window that ends before the tickets opened: nothing counted, means unknown.
    let empty = reader
        .summary(SummaryQuery {
            from: t0 - day,
            to: t0,
            group_by: GroupBy::Site,
        })
        .expect("empty window");
    assert_eq!(empty.totals.tickets, 0);
    assert_eq!(empty.totals.incidents, 0);
    assert_eq!(empty.totals.mtta_ms, None);
    assert_eq!(empty.totals.sla_met_pct, None);
    assert!(empty.groups.is_empty());
}

#[test]
fn summary_counts_incident_tickets_and_only_decided_ones_for_sla() {
    let (mut r, t0) = scenario();
    // A service request (another process) and an incident ticket still open inside its
    // targets (its SLA outcome is not known yet), both opened in the window.
    r.store
        .connection()
        .execute_batch(&format!(
            "INSERT INTO tickets (id, number, kind, state, priority, impact, urgency, category,
               assignment_group, summary, description, opened_at, updated_at)
             VALUES (10, 'REQ-000001', 'request', 'new', 'P4', 'low', 'low', 'software', 'desk', 's', 'd',
                     make_timestamp({t0} * 1000), make_timestamp({t0} * 1000)),
                    (11, 'INC-000011', 'incident', 'new', 'P2', 'medium', 'medium', 'software', 'desk', 's', 'd',
                     make_timestamp({t0} * 1000), make_timestamp({t0} * 1000));"
        ))
        .expect("tickets");
    let s = r
        .store
        .reader()
        .expect("reader")
        .summary(SummaryQuery {
            from: t0 - 86_400_000,
            to: t0 + 86_400_000,
            group_by: GroupBy::None,
        })
        .expect("summary");
    assert_eq!(s.totals.tickets, 3, "the request is not counted");
    assert_eq!(
        s.totals.sla_met_pct,
        Some(50.0),
        "the open ticket inside its targets is not decided yet"
    );
    assert_eq!(s.now.open_tickets, 2, "now counts every open ticket");
}
