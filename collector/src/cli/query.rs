//! `tocsin query "SELECT …"`: one read-only SQL query against the store (POST /api/v1/query),
//! its columns and rows as a table or CSV.

use serde_json::{Value as Json, json};

use super::output::{Cell, Column, Table};
use super::table::items;
use super::{ApiClient, CliError};

/// The request body; rows as arrays so the column order is kept.
pub fn query_body(sql: &str, limit: Option<u32>) -> Json {
    match limit {
        Some(n) => json!({"sql": sql, "limit": n, "format": "rows"}),
        None => json!({"sql": sql, "format": "rows"}),
    }
}

/// Run the query; a refusal (422) and the time limit (408) get their own errors and exit codes.
pub async fn run_query(
    client: &ApiClient,
    sql: &str,
    limit: Option<u32>,
) -> Result<Json, CliError> {
    let body = query_body(sql, limit);
    client
        .post("/api/v1/query", Some(&body))
        .await
        .map_err(|e| match e {
            CliError::Http {
                status: 422,
                message,
                ..
            } => CliError::QueryRefused {
                message: fold(&message),
            },
            CliError::Http {
                status: 408,
                message,
                ..
            } => CliError::QueryTimeout {
                message: fold(&message),
            },
            other => other,
        })
}

/// An SQL error may span lines (DuckDB adds `LINE 1: …`): one line for the terminal.
fn fold(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The columns' names in order.
fn column_names(v: &Json) -> Vec<String> {
    items(v.get("columns").unwrap_or(&Json::Null))
        .iter()
        .map(|c| match c {
            Json::String(s) => s.clone(),
            c => c
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

/// One value: strings truncated in the text (whole in CSV), lists and structs as JSON.
fn value_cell(v: &Json) -> Cell {
    match v {
        Json::String(s) => Cell::Long(s.clone(), 80),
        other => Cell::json(other),
    }
}

/// The answer as a table: the column names as the API gives them, NULL for nulls in the text.
pub fn query_table(v: &Json) -> Table {
    let names = column_names(v);
    let rows = items(v.get("rows").unwrap_or(&Json::Null))
        .iter()
        .map(|r| match r {
            Json::Array(values) => values.iter().map(value_cell).collect(),
            // format=objects: the values in column order.
            Json::Object(o) => names
                .iter()
                .map(|n| value_cell(o.get(n).unwrap_or(&Json::Null)))
                .collect(),
            other => vec![value_cell(other)],
        })
        .collect();
    let mut t = Table::with_columns(names.iter().map(|n| Column::named(n, n)).collect(), rows);
    t.null_text = "NULL";
    t
}

fn truncated_note() -> String {
    "truncated: more rows matched; raise --limit or narrow the query".to_string()
}

fn truncated(v: &Json) -> bool {
    v.get("truncated").and_then(Json::as_bool) == Some(true)
}

/// The note under the rows: how many, how long, and whether more were cut off.
pub fn query_note(v: &Json) -> String {
    let n = v
        .get("row_count")
        .and_then(Json::as_u64)
        .unwrap_or_else(|| items(v.get("rows").unwrap_or(&Json::Null)).len() as u64);
    let mut s = format!("({n} row{}", if n == 1 { "" } else { "s" });
    if let Some(ms) = v.get("elapsed_ms").and_then(Json::as_u64) {
        s.push_str(&format!(", {ms} ms"));
    }
    s.push(')');
    if truncated(v) {
        s.push(' ');
        s.push_str(&truncated_note());
    }
    s.push('\n');
    s
}

/// The answer for people: the table and the note.
pub fn query_text(v: &Json) -> String {
    let mut o = query_table(v).text();
    o.push_str(&query_note(v));
    o
}

/// For `--csv` (stdout holds only the CSV): the warning for stderr when rows were cut off.
pub fn query_csv_warning(v: &Json) -> Option<String> {
    truncated(v).then(|| format!("warning: {}", truncated_note()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Json {
        json!({
            "columns": [{"name": "priority", "type": "VARCHAR"}, {"name": "n", "type": "BIGINT"},
                        {"name": "opened", "type": "TIMESTAMP"}, {"name": "tags", "type": "VARCHAR[]"}],
            "rows": [["P1", 3, "2026-11-29T10:00:00Z", ["a", "b"]],
                     ["P2, \"big\"", null, null, []]],
            "row_count": 2, "truncated": false, "elapsed_ms": 12
        })
    }

    #[test]
    fn query_table_for_people() {
        let t = query_text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0], "priority   n     opened                tags",
            "{t}"
        );
        assert_eq!(
            lines[1], "P1         3     2026-11-29T10:00:00Z  [\"a\",\"b\"]",
            "{t}"
        );
        assert_eq!(
            lines[2], "P2, \"big\"  NULL  NULL                  []",
            "{t}"
        );
        assert_eq!(lines[3], "(2 rows, 12 ms)", "{t}");
        assert!(query_csv_warning(&sample()).is_none());
    }

    #[test]
    fn query_csv_keeps_names_and_values() {
        assert_eq!(
            query_table(&sample()).csv(),
            "priority,n,opened,tags\r\n\
             P1,3,2026-11-29T10:00:00Z,\"[\"\"a\"\",\"\"b\"\"]\"\r\n\
             \"P2, \"\"big\"\"\",,,[]\r\n"
        );
    }

    #[test]
    fn truncation_is_noted() {
        let mut v = sample();
        v["truncated"] = json!(true);
        v["row_count"] = json!(1);
        let t = query_text(&v);
        assert!(
            t.ends_with(
                "(1 row, 12 ms) truncated: more rows matched; raise --limit or narrow the query\n"
            ),
            "{t}"
        );
        let w = query_csv_warning(&v).expect("a warning");
        assert!(
            w.starts_with("warning: truncated: more rows matched"),
            "{w}"
        );
    }

    #[test]
    fn objects_and_empty_answers() {
        let v = json!({"columns": [{"name": "a"}, {"name": "b"}],
                       "rows": [{"b": 2, "a": "x"}], "row_count": 1});
        assert_eq!(query_table(&v).csv(), "a,b\r\nx,2\r\n");
        let empty = json!({"columns": [{"name": "a"}], "rows": [], "row_count": 0});
        assert_eq!(query_text(&empty), "a\n(none)\n(0 rows)\n");
        assert_eq!(query_table(&empty).csv(), "a\r\n");
    }

    #[test]
    fn bodies_and_messages() {
        assert_eq!(
            query_body("SELECT 1", Some(5)),
            json!({"sql": "SELECT 1", "limit": 5, "format": "rows"})
        );
        assert_eq!(
            query_body("SELECT 1", None),
            json!({"sql": "SELECT 1", "format": "rows"})
        );
        assert_eq!(
            fold("Catalog Error: no table x\n\nLINE 1: select * from x\n  ^"),
            "Catalog Error: no table x LINE 1: select * from x ^"
        );
    }
}
