//! One table, two renderings: aligned text for people and RFC 4180 CSV for scripts.
//!
//! The text shortens (long cells truncated, timestamps to the second, durations in words,
//! null as `-`); the CSV keeps full values (RFC 3339 timestamps, milliseconds, empty for null).

use serde_json::Value as Json;

use super::table::truncate;

/// A column: its title in the text table and its name in the CSV header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub title: String,
    pub csv: String,
}

impl Column {
    /// A column whose CSV name is the title in snake case (`ROOT CAUSE` -> `root_cause`).
    pub fn new(title: &str) -> Column {
        Column {
            title: title.to_string(),
            csv: snake(title),
        }
    }

    /// A column with its own CSV name (`MTTA` shown, `mtta_ms` in the CSV).
    pub fn named(title: &str, csv: &str) -> Column {
        Column {
            title: title.to_string(),
            csv: csv.to_string(),
        }
    }
}

/// `ROOT CAUSE` -> `root_cause`, `SENT/FAILED` -> `sent_failed`, `ACK'D` -> `ack_d`.
fn snake(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// One cell; how it shows depends on the rendering.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value: `-` in text (or what [`Table::null_text`] says), empty in CSV.
    Null,
    /// Shown as is.
    Text(String),
    /// Truncated to this many characters in text, whole in CSV.
    Long(String, usize),
    /// An RFC 3339 timestamp: `2026-11-29 16:09:01` in text, as given in CSV.
    Time(String),
    /// Milliseconds: `1m 5s` in text, the number in CSV.
    Millis(f64),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A JSON field: null or missing -> [`Cell::Null`], a string as is, anything else as JSON.
    pub fn field(v: &Json, key: &str) -> Cell {
        Cell::json(v.get(key).unwrap_or(&Json::Null))
    }

    /// A JSON value: null -> [`Cell::Null`], a string as is, anything else as compact JSON.
    pub fn json(v: &Json) -> Cell {
        match v {
            Json::Null => Cell::Null,
            Json::String(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_string()),
        }
    }

    /// A JSON field truncated to `max` characters in text.
    pub fn long(v: &Json, key: &str, max: usize) -> Cell {
        match Cell::field(v, key) {
            Cell::Text(s) => Cell::Long(s, max),
            other => other,
        }
    }

    /// A JSON timestamp field.
    pub fn time(v: &Json, key: &str) -> Cell {
        match Cell::field(v, key) {
            Cell::Text(s) => Cell::Time(s),
            other => other,
        }
    }

    /// A JSON field of milliseconds (a number, or null).
    pub fn millis(v: &Json, key: &str) -> Cell {
        match v.get(key).and_then(Json::as_f64) {
            Some(ms) => Cell::Millis(ms),
            None => Cell::Null,
        }
    }

    fn as_text(&self, null: &str) -> String {
        let s = match self {
            Cell::Null => return null.to_string(),
            Cell::Text(s) => s.clone(),
            Cell::Long(s, max) => truncate(s, *max),
            Cell::Time(s) => short_time(s),
            Cell::Millis(ms) => duration(*ms),
        };
        one_line(&s)
    }

    fn as_csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) | Cell::Long(s, _) | Cell::Time(s) => s.clone(),
            Cell::Millis(ms) => number(*ms),
        }
    }
}

/// `2026-11-29 16:09:01` from RFC 3339; anything else as is.
pub fn short_time(s: &str) -> String {
    match (s.get(..10), s.get(11..19)) {
        (Some(day), Some(time)) if s.as_bytes().get(10) == Some(&b'T') => format!("{day} {time}"),
        _ => s.to_string(),
    }
}

/// A number without a needless `.0` (`65000`, `1.5`).
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// Control characters (a newline in a summary) would break the text table's lines.
fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => " ".to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A duration for people, its two largest units: `450ms`, `1m 5s`, `2h 3m`, `3d 4h`.
pub fn duration(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    if ms < 0.0 {
        return format!("-{}", duration(-ms));
    }
    if ms.round() < 1000.0 {
        let ms = ms.round() as u64;
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let secs = (ms / 1000.0).round() as u64;
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts
        .iter()
        .skip(first)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A percentage for people: `90%`, `87.5%`.
pub fn percent(x: f64) -> String {
    let rounded = (x * 10.0).round() / 10.0;
    format!("{}%", number(rounded))
}

/// Columns and rows, rendered as text (`Display`, [`Table::text`]) or as CSV ([`Table::csv`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// How a null shows in the text (`-`; the query table says `NULL`).
    pub null_text: &'static str,
}

impl Table {
    /// A table whose CSV names are the titles in snake case.
    pub fn new(titles: &[&str], rows: Vec<Vec<Cell>>) -> Table {
        Table::with_columns(titles.iter().map(|t| Column::new(t)).collect(), rows)
    }

    pub fn with_columns(columns: Vec<Column>, rows: Vec<Vec<Cell>>) -> Table {
        Table {
            columns,
            rows,
            null_text: "-",
        }
    }

    /// Aligned columns under their titles; `(none)` under the titles when there are no rows.
    pub fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| c.as_text(self.null_text)).collect())
            .collect();
        let titles: Vec<&str> = self.columns.iter().map(|c| c.title.as_str()).collect();
        super::table::render(&titles, &rows)
    }

    /// RFC 4180: a header row, then one record per row, CRLF line ends, fields quoted when
    /// they hold a comma, a quote, CR or LF (quotes doubled).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        csv_record(&mut out, self.columns.iter().map(|c| c.csv.clone()));
        for row in &self.rows {
            csv_record(&mut out, row.iter().map(Cell::as_csv));
        }
        out
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// One CSV field, quoted when it must be.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_record(out: &mut String, fields: impl Iterator<Item = String>) {
    let fields: Vec<String> = fields.map(|f| csv_field(&f)).collect();
    out.push_str(&fields.join(","));
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_what_rfc_4180_says() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(csv_field(" spaced "), " spaced ");
        assert_eq!(csv_field("naïve — ok"), "naïve — ok");
    }

    #[test]
    fn csv_has_a_header_and_full_values() {
        let t = Table::with_columns(
            vec![
                Column::new("ROOT CAUSE"),
                Column::new("OPENED"),
                Column::named("MTTA", "mtta_ms"),
                Column::new("SENT/FAILED"),
            ],
            vec![
                vec![
                    Cell::Long("db, \"primary\"\ndown".into(), 5),
                    Cell::Time("2026-11-29T16:09:01.123Z".into()),
                    Cell::Millis(65_000.0),
                    Cell::Null,
                ],
                vec![
                    Cell::text("x"),
                    Cell::Null,
                    Cell::Millis(1.5),
                    Cell::text("ok"),
                ],
            ],
        );
        assert_eq!(
            t.csv(),
            "root_cause,opened,mtta_ms,sent_failed\r\n\
             \"db, \"\"primary\"\"\ndown\",2026-11-29T16:09:01.123Z,65000,\r\n\
             x,,1.5,ok\r\n"
        );
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ROOT CAUSE  OPENED"), "{text}");
        assert!(lines[1].starts_with("db, …"), "{text}");
        assert!(lines[1].contains("2026-11-29 16:09:01  1m 5s  -"), "{text}");
        assert!(lines[2].starts_with("x "), "{text}");
        // Only the header when there are no rows (no "(none)" line in a CSV).
        let empty = Table::new(&["A", "B C"], Vec::new());
        assert_eq!(empty.csv(), "a,b_c\r\n");
        assert!(empty.text().contains("(none)"));
    }

    #[test]
    fn text_cells_stay_on_one_line() {
        let t = Table::new(&["S"], vec![vec![Cell::text("a\nb\tc")]]);
        assert_eq!(t.text(), "S\na\\nb c\n");
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(snake("ROOT CAUSE"), "root_cause");
        assert_eq!(snake("ACK'D"), "ack_d");
        assert_eq!(snake("SLA MET %"), "sla_met");
        assert_eq!(snake("LAST REPORT"), "last_report");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(450.4), "450ms");
        assert_eq!(duration(999.6), "1s");
        assert_eq!(duration(1000.0), "1s");
        assert_eq!(duration(65_000.0), "1m 5s");
        assert_eq!(duration(60_000.0), "1m");
        assert_eq!(duration(3_600_000.0), "1h");
        assert_eq!(duration(3_500_000.0), "58m 20s");
        assert_eq!(duration(7_390_000.0), "2h 3m");
        assert_eq!(duration(3_601_000.0), "1h");
        assert_eq!(duration(90_061_000.0), "1d 1h");
        assert_eq!(duration(86_400_000.0 * 3.0 + 60_000.0), "3d");
        assert_eq!(duration(-65_000.0), "-1m 5s");
        assert_eq!(duration(f64::NAN), "-");
        assert_eq!(Cell::millis(&json!({"m": null}), "m").as_text("-"), "-");
    }

    #[test]
    fn percentages_and_numbers() {
        assert_eq!(percent(90.0), "90%");
        assert_eq!(percent(87.5), "87.5%");
        assert_eq!(percent(66.666_666), "66.7%");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn cells_from_json() {
        let v = json!({"s": "x", "n": 3, "b": true, "l": [1, "a"], "o": {"k": 1}, "z": null});
        assert_eq!(Cell::field(&v, "s"), Cell::text("x"));
        assert_eq!(Cell::field(&v, "n"), Cell::text("3"));
        assert_eq!(Cell::field(&v, "b"), Cell::text("true"));
        assert_eq!(Cell::field(&v, "l"), Cell::text("[1,\"a\"]"));
        assert_eq!(Cell::field(&v, "o"), Cell::text("{\"k\":1}"));
        assert_eq!(Cell::field(&v, "z"), Cell::Null);
        assert_eq!(Cell::field(&v, "missing"), Cell::Null);
        assert_eq!(short_time("2026-11-29T16:09:01Z"), "2026-11-29 16:09:01");
        assert_eq!(short_time("soon"), "soon");
    }
}
