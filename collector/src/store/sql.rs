//! Conversions between DuckDB values and JSON/Rust types used by the reader and writer.

use duckdb::types::{TimeUnit, Value};
use serde_json::{Map, Value as Json};

use crate::time::{Millis, rfc3339};

/// Columns holding JSON documents; they are parsed instead of returned as strings.
const JSON_COLUMNS: &[&str] = &[
    "inventory",
    "labels",
    "parents",
    "last_report",
    "reporter",
    "environment",
    "data",
    "payload_json",
    "match",
];

/// One DuckDB value as JSON: timestamps as RFC 3339 strings, JSON columns parsed.
pub fn to_json(column: &str, v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::TinyInt(i) => i.into(),
        Value::SmallInt(i) => i.into(),
        Value::Int(i) => i.into(),
        Value::BigInt(i) => i.into(),
        Value::HugeInt(i) => i64::try_from(i)
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(i.to_string())),
        Value::UHugeInt(i) => u64::try_from(i)
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(i.to_string())),
        Value::UTinyInt(i) => i.into(),
        Value::USmallInt(i) => i.into(),
        Value::UInt(i) => i.into(),
        Value::UBigInt(i) => i.into(),
        Value::Float(f) => serde_json::Number::from_f64(f64::from(f))
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Double(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Timestamp(unit, t) => Json::String(rfc3339(unit.to_micros(t) / 1000)),
        Value::Text(s) if JSON_COLUMNS.contains(&column) => {
            serde_json::from_str(&s).unwrap_or(Json::String(s))
        }
        Value::Text(s) | Value::Enum(s) => Json::String(s),
        Value::Blob(b) | Value::Geometry(b) => Json::String(format!("<{} bytes>", b.len())),
        Value::Date32(d) => Json::String(rfc3339(i64::from(d) * 86_400_000)[..10].to_string()),
        Value::Time64(unit, t) => Json::String(format!("{}us", unit.to_micros(t))),
        Value::Interval {
            months,
            days,
            nanos,
        } => Json::String(format!(
            "{months} months {days} days {}ms",
            nanos / 1_000_000
        )),
        Value::List(items) | Value::Array(items) => {
            Json::Array(items.into_iter().map(|i| to_json("", i)).collect())
        }
        Value::Struct(fields) => {
            let mut m = Map::new();
            for (k, v) in fields.iter() {
                m.insert(k.clone(), to_json(k, v.clone()));
            }
            Json::Object(m)
        }
        Value::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries.iter() {
                let key = match to_json("", k.clone()) {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, to_json("", v.clone()));
            }
            Json::Object(m)
        }
        Value::Union(inner) => to_json(column, *inner),
        other => Json::String(format!("{other:?}")),
    }
}

/// A TIMESTAMP column read as milliseconds.
pub fn millis_of(v: Value) -> Option<Millis> {
    match v {
        Value::Timestamp(unit, t) => Some(match unit {
            TimeUnit::Second => t * 1000,
            TimeUnit::Millisecond => t,
            TimeUnit::Microsecond => t / 1000,
            TimeUnit::Nanosecond => t / 1_000_000,
        }),
        Value::BigInt(ms) => Some(ms),
        _ => None,
    }
}

/// Run a query and return every row as a JSON object keyed by column name.
pub fn query_json(
    conn: &duckdb::Connection,
    sql: &str,
    params: &[&dyn duckdb::ToSql],
) -> Result<Vec<Map<String, Json>>, duckdb::Error> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    let names: Vec<String> = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut obj = Map::new();
        for (i, name) in names.iter().enumerate() {
            let v: Value = row.get(i)?;
            obj.insert(name.clone(), to_json(name, v));
        }
        out.push(obj);
    }
    Ok(out)
}
