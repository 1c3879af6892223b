//! The SNMP interface table (IF-MIB ifTable + ifXTable) as plain data, and its metrics: status, speed and counter rates.
//!
//! Everything here is pure: [`SnmpValue`]s go into an [`IfTable`] with [`set`], a [`Sample`]
//! of its counters is kept between cycles, and [`interface_metrics`] turns a table plus the
//! previous sample into metrics. Rates come from [`crate::collect::counter_rate`]: none for a
//! counter that went backwards, none at all when the device rebooted (sysUpTime went down).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use tocsin_protocol::Metric;

use crate::collect::{counter_rate, round2};

/// Longest label value the protocol accepts.
pub const MAX_LABEL_VALUE: usize = 256;

/// An SNMP value, owned (the session's buffer is reused by the next request).
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpValue {
    Integer(i64),
    Counter32(u32),
    /// Gauge32 / Unsigned32.
    Unsigned32(u32),
    Counter64(u64),
    Timeticks(u32),
    Text(Vec<u8>),
    /// noSuchObject, noSuchInstance or NULL: the agent has no such value.
    Absent,
    /// endOfMibView: nothing after this OID.
    EndOfMib,
    /// Any other type (OIDs, addresses...): not used here.
    Other,
}

impl SnmpValue {
    /// Copy a value out of a response.
    pub fn from_value(v: &snmp2::Value<'_>) -> Self {
        use snmp2::Value as V;
        match v {
            V::Integer(i) => SnmpValue::Integer(*i),
            V::Counter32(c) => SnmpValue::Counter32(*c),
            V::Unsigned32(u) => SnmpValue::Unsigned32(*u),
            V::Counter64(c) => SnmpValue::Counter64(*c),
            V::Timeticks(t) => SnmpValue::Timeticks(*t),
            V::OctetString(s) => SnmpValue::Text(s.to_vec()),
            V::NoSuchObject | V::NoSuchInstance | V::Null => SnmpValue::Absent,
            V::EndOfMibView => SnmpValue::EndOfMib,
            _ => SnmpValue::Other,
        }
    }

    /// Non-negative numbers of any numeric type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            SnmpValue::Integer(i) => u64::try_from(i).ok(),
            SnmpValue::Counter32(v) | SnmpValue::Unsigned32(v) | SnmpValue::Timeticks(v) => {
                Some(u64::from(v))
            }
            SnmpValue::Counter64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            SnmpValue::Integer(i) => Some(i),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Text, cleaned to one printable line of at most `max` bytes; `None` when empty.
    pub fn as_text(&self, max: usize) -> Option<String> {
        match self {
            SnmpValue::Text(bytes) => clean_text(bytes, max),
            _ => None,
        }
    }
}

/// Lossy UTF-8 without control characters, trimmed, cut at a character boundary to `max` bytes.
pub fn clean_text(bytes: &[u8], max: usize) -> Option<String> {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    (!text.is_empty()).then_some(text)
}

const IF_ENTRY: [u64; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_X_ENTRY: [u64; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The IF-MIB columns walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    Descr,
    Speed,
    AdminStatus,
    OperStatus,
    InOctets,
    InDiscards,
    InErrors,
    OutOctets,
    OutDiscards,
    OutErrors,
    Name,
    HcInOctets,
    HcOutOctets,
    HighSpeed,
}

impl Column {
    pub const ALL: [Column; 14] = [
        Column::Descr,
        Column::Speed,
        Column::AdminStatus,
        Column::OperStatus,
        Column::InOctets,
        Column::InDiscards,
        Column::InErrors,
        Column::OutOctets,
        Column::OutDiscards,
        Column::OutErrors,
        Column::Name,
        Column::HcInOctets,
        Column::HcOutOctets,
        Column::HighSpeed,
    ];

    /// The column's OID (the entry OID plus the column number).
    pub fn oid(self) -> Vec<u64> {
        let (entry, column): (&[u64], u64) = match self {
            Column::Descr => (&IF_ENTRY, 2),
            Column::Speed => (&IF_ENTRY, 5),
            Column::AdminStatus => (&IF_ENTRY, 7),
            Column::OperStatus => (&IF_ENTRY, 8),
            Column::InOctets => (&IF_ENTRY, 10),
            Column::InDiscards => (&IF_ENTRY, 13),
            Column::InErrors => (&IF_ENTRY, 14),
            Column::OutOctets => (&IF_ENTRY, 16),
            Column::OutDiscards => (&IF_ENTRY, 19),
            Column::OutErrors => (&IF_ENTRY, 20),
            Column::Name => (&IF_X_ENTRY, 1),
            Column::HcInOctets => (&IF_X_ENTRY, 6),
            Column::HcOutOctets => (&IF_X_ENTRY, 10),
            Column::HighSpeed => (&IF_X_ENTRY, 15),
        };
        let mut oid = entry.to_vec();
        oid.push(column);
        oid
    }
}

/// One interface (row of ifTable/ifXTable, keyed by ifIndex in an [`IfTable`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IfRow {
    pub descr: Option<String>,
    pub name: Option<String>,
    pub admin_status: Option<i64>,
    pub oper_status: Option<i64>,
    /// ifSpeed, bit/s (saturates at 4.29 Gbit/s).
    pub speed: Option<u64>,
    /// ifHighSpeed, Mbit/s.
    pub high_speed: Option<u64>,
    pub in_octets: Option<u64>,
    pub out_octets: Option<u64>,
    pub hc_in_octets: Option<u64>,
    pub hc_out_octets: Option<u64>,
    pub in_errors: Option<u64>,
    pub out_errors: Option<u64>,
    pub in_discards: Option<u64>,
    pub out_discards: Option<u64>,
}

/// Interfaces by ifIndex.
pub type IfTable = BTreeMap<u32, IfRow>;

/// Store one walked value in its row; values of the wrong type are ignored.
pub fn set(table: &mut IfTable, column: Column, index: u32, value: &SnmpValue) {
    let row = table.entry(index).or_default();
    let n = value.as_u64();
    match column {
        Column::Descr => row.descr = value.as_text(MAX_LABEL_VALUE),
        Column::Name => row.name = value.as_text(MAX_LABEL_VALUE),
        Column::AdminStatus => row.admin_status = value.as_i64(),
        Column::OperStatus => row.oper_status = value.as_i64(),
        Column::Speed => row.speed = n,
        Column::HighSpeed => row.high_speed = n,
        Column::InOctets => row.in_octets = n,
        Column::OutOctets => row.out_octets = n,
        Column::HcInOctets => row.hc_in_octets = n,
        Column::HcOutOctets => row.hc_out_octets = n,
        Column::InErrors => row.in_errors = n,
        Column::OutErrors => row.out_errors = n,
        Column::InDiscards => row.in_discards = n,
        Column::OutDiscards => row.out_discards = n,
    }
}

/// One counter reading; `hc` when it came from a 64-bit ifXTable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub value: u64,
    pub hc: bool,
}

/// The counters of one interface at one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfCounters {
    pub rx_bytes: Option<Counter>,
    pub tx_bytes: Option<Counter>,
    pub rx_errors: Option<Counter>,
    pub tx_errors: Option<Counter>,
    pub rx_discards: Option<Counter>,
    pub tx_discards: Option<Counter>,
}

fn c32(v: Option<u64>) -> Option<Counter> {
    v.map(|value| Counter { value, hc: false })
}

impl IfRow {
    /// Counters, octets from the 64-bit columns when present, else the 32-bit ones.
    pub fn counters(&self) -> IfCounters {
        let octets = |hc: Option<u64>, low: Option<u64>| {
            hc.map(|value| Counter { value, hc: true }).or(c32(low))
        };
        IfCounters {
            rx_bytes: octets(self.hc_in_octets, self.in_octets),
            tx_bytes: octets(self.hc_out_octets, self.out_octets),
            rx_errors: c32(self.in_errors),
            tx_errors: c32(self.out_errors),
            rx_discards: c32(self.in_discards),
            tx_discards: c32(self.out_discards),
        }
    }

    /// Bit/s from ifHighSpeed (Mbit/s) when set, else ifSpeed; `None` when unknown or 0.
    pub fn speed_bps(&self) -> Option<f64> {
        match (self.high_speed, self.speed) {
            (Some(mbps), _) if mbps > 0 => Some(mbps as f64 * 1e6),
            (_, Some(bps)) if bps > 0 => Some(bps as f64),
            _ => None,
        }
    }

    /// ifAdminStatus up(1). Unknown counts as up (so its figures are reported).
    pub fn admin_up(&self) -> bool {
        self.admin_status.is_none_or(|s| s == 1)
    }

    /// The `interface` label: ifName, else ifDescr, else `if<ifIndex>`.
    pub fn label(&self, index: u32) -> String {
        self.name
            .clone()
            .or_else(|| self.descr.clone())
            .unwrap_or_else(|| format!("if{index}"))
    }
}

/// The counters of one poll, kept for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// sysUpTime.0 in hundredths of a second.
    pub uptime_ticks: Option<u32>,
    pub counters: BTreeMap<u32, IfCounters>,
}

impl Sample {
    pub fn of(table: &IfTable, uptime_ticks: Option<u32>, at: Instant) -> Self {
        Sample {
            at,
            uptime_ticks,
            counters: table.iter().map(|(i, r)| (*i, r.counters())).collect(),
        }
    }
}

/// Rates between two samples are meaningful: time passed and the device did not reboot.
pub fn rates_allowed(prev: &Sample, cur: &Sample) -> bool {
    let rebooted = matches!((prev.uptime_ticks, cur.uptime_ticks), (Some(p), Some(c)) if c < p);
    !rebooted && cur.at > prev.at
}

fn rate(prev: Option<Counter>, cur: Option<Counter>, prev_at: Instant, at: Instant) -> Option<f64> {
    let (p, c) = (prev?, cur?);
    if p.hc != c.hc {
        // Switched between the 32- and 64-bit columns: the readings do not compare.
        return None;
    }
    counter_rate(p.value, c.value, at.saturating_duration_since(prev_at)).map(round2)
}

/// Metrics of every interface, grouped per interface (in ifIndex order) so a caller can
/// leave whole interfaces out. Admin-down interfaces only get `if.admin_up` and `if.oper_up`.
/// Interfaces sharing a name get `#<ifIndex>` appended to keep their series apart.
pub fn interface_metrics(table: &IfTable, prev: Option<&Sample>, cur: &Sample) -> Vec<Vec<Metric>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, row) in table {
        *seen.entry(row.label(*index)).or_default() += 1;
    }
    let prev = prev.filter(|p| rates_allowed(p, cur));
    table
        .iter()
        .map(|(index, row)| {
            let mut label = row.label(*index);
            if seen.get(&label).is_some_and(|n| *n > 1) {
                let suffix = format!("#{index}");
                let keep = MAX_LABEL_VALUE - suffix.len();
                label = clean_text(label.as_bytes(), keep).unwrap_or_default() + &suffix;
            }
            let m =
                |name: &str, value: f64| Metric::new(name, value).with_label("interface", &label);
            let mut out = vec![
                m("if.admin_up", f64::from(u8::from(row.admin_up()))),
                m(
                    "if.oper_up",
                    f64::from(u8::from(row.oper_status == Some(1))),
                ),
            ];
            if !row.admin_up() {
                return out;
            }
            if let Some(bps) = row.speed_bps() {
                out.push(m("if.speed_bps", bps));
            }
            let now = row.counters();
            if let Some((prev, before)) = prev.and_then(|p| Some((p, p.counters.get(index)?))) {
                let pairs = [
                    ("if.rx_bytes_per_s", before.rx_bytes, now.rx_bytes),
                    ("if.tx_bytes_per_s", before.tx_bytes, now.tx_bytes),
                    ("if.rx_errors_per_s", before.rx_errors, now.rx_errors),
                    ("if.tx_errors_per_s", before.tx_errors, now.tx_errors),
                    ("if.rx_discards_per_s", before.rx_discards, now.rx_discards),
                    ("if.tx_discards_per_s", before.tx_discards, now.tx_discards),
                ];
                for (name, p, c) in pairs {
                    if let Some(r) = rate(p, c, prev.at, cur.at) {
                        out.push(m(name, r));
                    }
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(name: &str, hc_in: Option<u64>, in32: u64) -> IfRow {
        IfRow {
            name: Some(name.to_string()),
            admin_status: Some(1),
            oper_status: Some(1),
            high_speed: Some(1000),
            speed: Some(1_000_000_000),
            hc_in_octets: hc_in,
            in_octets: Some(in32),
            hc_out_octets: hc_in.map(|v| v * 2),
            out_octets: Some(in32 * 2),
            in_errors: Some(10),
            out_errors: Some(0),
            in_discards: Some(5),
            out_discards: Some(0),
            ..IfRow::default()
        }
    }

    fn find<'a>(groups: &'a [Vec<Metric>], name: &str, iface: &str) -> Option<&'a Metric> {
        groups.iter().flatten().find(|m| {
            m.name == name && m.labels.get("interface").map(String::as_str) == Some(iface)
        })
    }

    #[test]
    fn values_from_responses_are_typed() {
        use snmp2::Value as V;
        assert_eq!(SnmpValue::from_value(&V::Counter64(7)).as_u64(), Some(7));
        assert_eq!(SnmpValue::from_value(&V::Counter32(7)).as_u64(), Some(7));
        assert_eq!(
            SnmpValue::from_value(&V::Unsigned32(100)).as_u64(),
            Some(100)
        );
        assert_eq!(
            SnmpValue::from_value(&V::Timeticks(150)).as_u64(),
            Some(150)
        );
        assert_eq!(SnmpValue::from_value(&V::Integer(-1)).as_u64(), None);
        assert_eq!(SnmpValue::from_value(&V::Integer(2)).as_i64(), Some(2));
        assert_eq!(SnmpValue::from_value(&V::NoSuchObject), SnmpValue::Absent);
        assert_eq!(SnmpValue::from_value(&V::NoSuchInstance), SnmpValue::Absent);
        assert_eq!(SnmpValue::from_value(&V::EndOfMibView), SnmpValue::EndOfMib);
        assert_eq!(
            SnmpValue::from_value(&V::IpAddress([1, 2, 3, 4])),
            SnmpValue::Other
        );
        let text = SnmpValue::from_value(&V::OctetString(b"Gi1/0/1\0\r\n"));
        assert_eq!(text.as_text(256).as_deref(), Some("Gi1/0/1"));
        assert_eq!(SnmpValue::Counter32(1).as_text(256), None);
    }

    #[test]
    fn text_is_cleaned_and_cut_at_a_char_boundary() {
        assert_eq!(clean_text(b"  a\tb\n", 10).as_deref(), Some("a b"));
        assert_eq!(clean_text(b"", 10), None);
        assert_eq!(
            clean_text(b"\xff\xfe", 10).as_deref(),
            Some("\u{fffd}\u{fffd}")
        );
        // "é" is two bytes: cutting at 3 keeps "aé", at 2 keeps "a".
        assert_eq!(clean_text("aéb".as_bytes(), 3).as_deref(), Some("aé"));
        assert_eq!(clean_text("aéb".as_bytes(), 2).as_deref(), Some("a"));
    }

    #[test]
    fn walked_values_fill_rows() {
        let mut t = IfTable::new();
        set(
            &mut t,
            Column::Descr,
            3,
            &SnmpValue::Text(b"eth0 long".to_vec()),
        );
        set(&mut t, Column::OperStatus, 3, &SnmpValue::Integer(2));
        set(
            &mut t,
            Column::HcInOctets,
            3,
            &SnmpValue::Counter64(1 << 40),
        );
        set(&mut t, Column::Speed, 3, &SnmpValue::Unsigned32(10_000_000));
        set(
            &mut t,
            Column::InErrors,
            3,
            &SnmpValue::Text(b"junk".to_vec()),
        );
        let r = &t[&3];
        assert_eq!(r.label(3), "eth0 long");
        assert_eq!(r.oper_status, Some(2));
        assert_eq!(
            r.counters().rx_bytes,
            Some(Counter {
                value: 1 << 40,
                hc: true
            })
        );
        assert_eq!(r.in_errors, None);
        assert_eq!(r.speed_bps(), Some(10_000_000.0));
        set(&mut t, Column::Name, 3, &SnmpValue::Text(b"eth0".to_vec()));
        assert_eq!(t[&3].label(3), "eth0");
        assert_eq!(IfRow::default().label(9), "if9");
        assert_eq!(
            Column::HcInOctets.oid(),
            vec![1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6]
        );
        assert_eq!(Column::OperStatus.oid(), vec![1, 3, 6, 1, 2, 1, 2, 2, 1, 8]);
    }

    #[test]
    fn speed_prefers_high_speed() {
        let mut r = IfRow {
            high_speed: Some(10_000),
            speed: Some(u64::from(u32::MAX)),
            ..IfRow::default()
        };
        assert_eq!(r.speed_bps(), Some(1e10));
        r.high_speed = Some(0);
        assert_eq!(r.speed_bps(), Some(f64::from(u32::MAX)));
        r.speed = Some(0);
        assert_eq!(r.speed_bps(), None);
    }

    #[test]
    fn first_poll_has_status_but_no_rates() {
        let t: IfTable = [(1, row("Gi1", Some(1000), 1000))].into();
        let s = Sample::of(&t, Some(100), Instant::now());
        let g = interface_metrics(&t, None, &s);
        let names: Vec<_> = g[0].iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["if.admin_up", "if.oper_up", "if.speed_bps"]);
        assert_eq!(find(&g, "if.speed_bps", "Gi1").map(|m| m.value), Some(1e9));
    }

    #[test]
    fn rates_between_polls() {
        let t0 = Instant::now();
        let before: IfTable = [
            (1, row("Gi1", Some(1000), 1000)),
            (2, row("Gi2", None, 500)),
        ]
        .into();
        let prev = Sample::of(&before, Some(100), t0);
        let after: IfTable = [(1, row("Gi1", Some(3000), 9)), (2, row("Gi2", None, 700))].into();
        let cur = Sample::of(&after, Some(300), t0 + Duration::from_secs(2));
        let g = interface_metrics(&after, Some(&prev), &cur);
        let v = |name, i| find(&g, name, i).map(|m| m.value);
        // 64-bit counters are used when present (the 32-bit one went "backwards" here).
        assert_eq!(v("if.rx_bytes_per_s", "Gi1"), Some(1000.0));
        assert_eq!(v("if.tx_bytes_per_s", "Gi1"), Some(2000.0));
        // 32-bit fallback.
        assert_eq!(v("if.rx_bytes_per_s", "Gi2"), Some(100.0));
        assert_eq!(v("if.rx_errors_per_s", "Gi1"), Some(0.0));
        assert_eq!(v("if.rx_discards_per_s", "Gi2"), Some(0.0));
        assert_eq!(v("if.tx_discards_per_s", "Gi2"), Some(0.0));
        assert_eq!(v("if.tx_errors_per_s", "Gi2"), Some(0.0));
        for m in g.iter().flatten() {
            assert!(tocsin_protocol::is_valid_metric_name(&m.name), "{}", m.name);
        }
    }

    #[test]
    fn no_rate_after_a_reset_a_reboot_or_a_column_switch() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let before: IfTable = [(1, row("Gi1", Some(5000), 5000))].into();
        let prev = Sample::of(&before, Some(100_000), t0);

        // The counter went backwards (reset/wrap): no rate for it, others still.
        let mut reset = row("Gi1", Some(10), 10);
        reset.in_errors = Some(20);
        let after: IfTable = [(1, reset)].into();
        let g = interface_metrics(
            &after,
            Some(&prev),
            &Sample::of(&after, Some(101_000), later),
        );
        assert!(find(&g, "if.rx_bytes_per_s", "Gi1").is_none());
        assert_eq!(
            find(&g, "if.rx_errors_per_s", "Gi1").map(|m| m.value),
            Some(1.0)
        );

        // sysUpTime went down: the device rebooted, no rates at all.
        let after: IfTable = [(1, row("Gi1", Some(9000), 9000))].into();
        let cur = Sample::of(&after, Some(50), later);
        assert!(!rates_allowed(&prev, &cur));
        let g = interface_metrics(&after, Some(&prev), &cur);
        assert!(g.iter().flatten().all(|m| !m.name.ends_with("_per_s")));

        // HC counters disappeared: the 32-bit reading does not compare with the 64-bit one.
        let after: IfTable = [(1, row("Gi1", None, 9000))].into();
        let g = interface_metrics(
            &after,
            Some(&prev),
            &Sample::of(&after, Some(101_000), later),
        );
        assert!(find(&g, "if.rx_bytes_per_s", "Gi1").is_none());

        // No time passed.
        let same = Sample::of(&before, Some(100_000), t0);
        assert!(!rates_allowed(&prev, &same));

        // A new interface gets its first rate on the next poll.
        let after: IfTable = [
            (1, row("Gi1", Some(6000), 6000)),
            (7, row("Gi7", Some(1), 1)),
        ]
        .into();
        let g = interface_metrics(
            &after,
            Some(&prev),
            &Sample::of(&after, Some(101_000), later),
        );
        assert!(find(&g, "if.rx_bytes_per_s", "Gi1").is_some());
        assert!(find(&g, "if.rx_bytes_per_s", "Gi7").is_none());
        assert!(find(&g, "if.oper_up", "Gi7").is_some());
    }

    #[test]
    fn admin_down_interfaces_only_report_status() {
        let mut down = row("Gi9", Some(1), 1);
        down.admin_status = Some(2);
        down.oper_status = Some(2);
        let t: IfTable = [(9, down)].into();
        let g = interface_metrics(&t, None, &Sample::of(&t, None, Instant::now()));
        let got: Vec<_> = g[0].iter().map(|m| (m.name.as_str(), m.value)).collect();
        assert_eq!(got, [("if.admin_up", 0.0), ("if.oper_up", 0.0)]);
    }

    #[test]
    fn duplicate_names_are_told_apart() {
        let t: IfTable = [
            (1, row("vlan", None, 1)),
            (2, row("vlan", None, 1)),
            (3, row("x", None, 1)),
        ]
        .into();
        let g = interface_metrics(&t, None, &Sample::of(&t, None, Instant::now()));
        assert!(find(&g, "if.oper_up", "vlan#1").is_some());
        assert!(find(&g, "if.oper_up", "vlan#2").is_some());
        assert!(find(&g, "if.oper_up", "x").is_some());
        let long = "n".repeat(MAX_LABEL_VALUE);
        let t: IfTable = [(1, row(&long, None, 1)), (22, row(&long, None, 1))].into();
        let g = interface_metrics(&t, None, &Sample::of(&t, None, Instant::now()));
        for m in g.iter().flatten() {
            assert!(m.labels["interface"].len() <= MAX_LABEL_VALUE);
        }
        assert!(g[1][0].labels["interface"].ends_with("#22"));
    }
}
