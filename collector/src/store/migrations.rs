//! Numbered schema migrations, applied in order, each once, each in its own transaction.

use duckdb::Connection;

use super::StoreError;

/// (version, name, SQL). Append only: never edit a migration that has shipped.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (
        2,
        "topology_problems_maintenance",
        include_str!("migrations/0002_topology_problems_maintenance.sql"),
    ),
    (
        3,
        "tickets_sla_outbox",
        include_str!("migrations/0003_tickets_sla_outbox.sql"),
    ),
    (
        4,
        "analytics_views",
        include_str!("migrations/0004_analytics_views.sql"),
    ),
    (
        5,
        "history_views",
        include_str!("migrations/0005_history_views.sql"),
    ),
    (
        6,
        "node_reports",
        include_str!("migrations/0006_node_reports.sql"),
    ),
];

/// Apply every migration newer than the database; returns how many ran.
pub fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    migrate_to(conn, i32::MAX)
}

/// Apply the migrations up to and including `target` (tests build old schemas with it).
pub fn migrate_to(conn: &mut Connection, target: i32) -> Result<usize, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name VARCHAR NOT NULL,
             applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
         );",
    )?;
    let current: i32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if let Some(&(latest, _, _)) = MIGRATIONS.last()
        && current > latest
    {
        return Err(StoreError::TooNew {
            found: current,
            known: latest,
        });
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS
        .iter()
        .filter(|(v, _, _)| *v > current && *v <= target)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version: *version,
            message: e.to_string(),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            duckdb::params![version, name],
        )?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_idempotent() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "migrations are numbered 1, 2, 3, ...");
        }
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut conn).expect("first run"), MIGRATIONS.len());
        assert_eq!(migrate(&mut conn).expect("second run"), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_name IN
                 ('nodes','alerts','incidents','incident_alerts','problems','problem_incidents',
                  'tickets','ticket_events','notifications','rejected_payloads')",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(tables, 10);
        let maintenance: i64 = conn
            .query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'maintenance'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(maintenance, 1);
    }

    #[test]
    fn refuses_a_database_from_a_newer_build() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')",
            [],
        )
        .expect("insert");
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }
}
