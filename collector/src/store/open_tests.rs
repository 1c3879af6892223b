//! Store tests: opening the database file, reopening it, and the settings it opens with.

use std::path::Path;

use tocsin_protocol::CheckStatus;

use super::tests::{engine, report, scope, write};
use super::*;

#[test]
fn file_database_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sub/tocsin.duckdb");
    {
        let mut store = Store::open(&path).expect("open");
        let mut e = engine(crate::engine::Snapshot::default());
        let out = e.handle(10_000, report(1, 10_000, CheckStatus::Critical));
        write(&mut store, &out.effects);
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store
            .snapshot(scope(20_000))
            .expect("snapshot")
            .incidents
            .len(),
        1
    );
    let err = Store::open(Path::new("/proc/nope/x.duckdb")).expect_err("unwritable");
    assert!(
        err.to_string().starts_with("/proc/nope/x.duckdb: "),
        "{err}"
    );
}

/// `[store] memory_limit` bounds DuckDB's buffer pool, stays locked like the other
/// settings, and a value DuckDB does not take is refused at open in one line.
#[test]
fn the_configured_memory_limit_bounds_duckdb() {
    let dir = tempfile::tempdir().expect("tmp");
    let limit = |store: &mut Store| -> String {
        store
            .connection()
            .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
            .expect("setting")
    };
    let config = crate::config::StoreConfig {
        path: dir.path().join("t.duckdb"),
        memory_limit: "64MB".into(),
        ..Default::default()
    };
    let mut store = Store::open_configured(&config).expect("open");
    let set = limit(&mut store);
    assert!(
        set.starts_with("61.0 MiB") || set.starts_with("64.0 MB"),
        "{set}"
    );
    assert!(
        store
            .connection()
            .execute_batch("SET memory_limit = '8GB'")
            .is_err(),
        "the limit is locked"
    );
    drop(store);
    let mut default = Store::open_configured(&crate::config::StoreConfig {
        path: dir.path().join("t.duckdb"),
        ..Default::default()
    })
    .expect("open with the default");
    let set = limit(&mut default);
    assert!(
        set.starts_with("122.0 MiB") || set.starts_with("128.0 MB"),
        "{set}"
    );
    drop(default);

    let err = Store::open_configured(&crate::config::StoreConfig {
        memory_limit: "lots".into(),
        ..config
    })
    .expect_err("not a size");
    let msg = err.to_string();
    assert!(
        msg.contains("t.duckdb") && msg.contains("memory_limit = \"lots\""),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
