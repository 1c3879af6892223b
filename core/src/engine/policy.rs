//! policy.toml: priority matrix, SLA targets, escalation, routing, grouping and verification.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::targets::{
    Channel, EmailTarget, GroupPolicy, MqttTarget, NotifyPolicy, Target, Webhook,
};
use crate::error::ConfigError;
use crate::rules::{Category, Severity};
use crate::time::{Millis, millis};

/// Ticket priority: P1 urgent, P2 high, P3 medium, P4 low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
    P4,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }

    /// The service-desk word for it.
    pub fn label(self) -> &'static str {
        match self {
            Priority::P1 => "urgent",
            Priority::P2 => "high",
            Priority::P3 => "medium",
            Priority::P4 => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "P1" => Some(Priority::P1),
            "P2" => Some(Priority::P2),
            "P3" => Some(Priority::P3),
            "P4" => Some(Priority::P4),
            _ => None,
        }
    }
}

/// Impact or urgency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    High,
    Medium,
    Low,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "high" | "critical" => Some(Level::High),
            "medium" => Some(Level::Medium),
            "low" => Some(Level::Low),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Level::High => 0,
            Level::Medium => 1,
            Level::Low => 2,
        }
    }

    /// Urgency of an alert of this severity.
    pub fn from_severity(s: Severity) -> Level {
        match s {
            Severity::Critical => Level::High,
            Severity::Warning => Level::Medium,
            Severity::Info => Level::Low,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grouping {
    /// Alerts of one node within this long of an open incident join it.
    #[serde(default = "d_5m", with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentPolicy {
    /// Resolved -> closed after this long without recurrence.
    #[serde(default = "d_10m", with = "humantime_serde")]
    pub verify_for: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemPolicy {
    #[serde(default = "d_3")]
    pub threshold: u32,
    #[serde(default = "d_7d", with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityPolicy {
    /// Rows: impact high, medium, low; columns: urgency high, medium, low.
    #[serde(default = "default_matrix")]
    pub matrix: [[Priority; 3]; 3],
    /// Node label that states business impact (`high|medium|low`).
    #[serde(default = "d_impact_label")]
    pub impact_label: String,
    /// Impact when the node has no such label.
    #[serde(default = "d_medium")]
    pub default_impact: Level,
    /// An incident affecting at least this many nodes has high impact.
    #[serde(default = "d_10")]
    pub nodes_high: u32,
    /// ... at least this many, at least medium impact.
    #[serde(default = "d_3")]
    pub nodes_medium: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlappingPolicy {
    /// More state changes than this within `window` mark an alert as flapping.
    #[serde(default = "d_5")]
    pub changes: u32,
    #[serde(default = "d_10m", with = "humantime_serde")]
    pub window: Duration,
    /// A flapping alert settles after this long without a change.
    #[serde(default = "d_10m", with = "humantime_serde")]
    pub settle_for: Duration,
}

/// A maintenance window in policy.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenancePolicy {
    pub name: String,
    /// Keys `site`, `node`, `labels.<key>`; values may use `*`.
    #[serde(rename = "match", default)]
    pub match_: BTreeMap<String, String>,
    /// RFC 3339, e.g. `2026-12-06T02:00:00Z`.
    pub start: String,
    /// RFC 3339; or give `duration`.
    pub end: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Repeat every this long from `start` (e.g. `"7d"` for a weekly window).
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// Time to acknowledge.
    #[serde(with = "humantime_serde")]
    pub response: Duration,
    /// Time to resolve.
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// Count only the business hours of this `[calendar.<name>]` (default: around the clock).
    #[serde(default)]
    pub calendar: Option<String>,
    /// Notify the first escalation level as soon as a ticket of this priority opens
    /// (default: true for P1, false otherwise).
    #[serde(default)]
    pub notify_at_once: Option<bool>,
}

/// One level of the escalation chain, in order (the team on duty, a senior engineer, the
/// manager and the vendor, ...). A trigger moves a ticket one level up; `after` is how long
/// the previous level keeps it (since its escalation, or since the ticket opened for the
/// first level) before this one can be reached: an earlier trigger waits until then.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    pub name: String,
    #[serde(default, with = "humantime_serde")]
    pub after: Duration,
    #[serde(default)]
    pub notify: Vec<String>,
}

/// Route tickets whose facts match every key to an assignment group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Keys: `category`, `site`, `node`, `rule`, `severity`, or `labels.<key>`; values may use `*`.
    #[serde(rename = "match")]
    pub match_: BTreeMap<String, String>,
    pub group: String,
}

/// The whole policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub grouping: Grouping,
    #[serde(default)]
    pub incident: IncidentPolicy,
    #[serde(default)]
    pub problem: ProblemPolicy,
    #[serde(default)]
    pub priority: PriorityPolicy,
    #[serde(default)]
    pub flapping: FlappingPolicy,
    #[serde(default)]
    pub maintenance: Vec<MaintenancePolicy>,
    #[serde(default)]
    pub sla: BTreeMap<Priority, Sla>,
    /// Business-hours calendars SLA targets may count in.
    #[serde(default, rename = "calendar")]
    pub calendars: BTreeMap<String, super::calendar::CalendarConfig>,
    /// The calendars, validated (filled when the policy is read).
    #[serde(skip)]
    pub business_hours: BTreeMap<String, super::calendar::Calendar>,
    #[serde(default)]
    pub escalation: Vec<EscalationLevel>,
    #[serde(default)]
    pub notify: NotifyPolicy,
    /// Assignment groups' own notification targets (`group` in a level's notify list).
    #[serde(default, rename = "group")]
    pub groups: BTreeMap<String, GroupPolicy>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Assignment group when no route matches.
    #[serde(default = "d_group")]
    pub default_group: String,
}

fn d_5m() -> Duration {
    Duration::from_secs(300)
}
fn d_10m() -> Duration {
    Duration::from_secs(600)
}
fn d_7d() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn d_3() -> u32 {
    3
}
fn d_5() -> u32 {
    5
}
fn d_10() -> u32 {
    10
}
fn d_impact_label() -> String {
    "criticality".into()
}
fn d_medium() -> Level {
    Level::Medium
}
fn d_group() -> String {
    "service-desk".into()
}
fn default_matrix() -> [[Priority; 3]; 3] {
    use Priority::*;
    [[P1, P2, P3], [P2, P3, P4], [P3, P4, P4]]
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping { window: d_5m() }
    }
}
impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            verify_for: d_10m(),
        }
    }
}
impl Default for ProblemPolicy {
    fn default() -> Self {
        ProblemPolicy {
            threshold: d_3(),
            window: d_7d(),
        }
    }
}
impl Default for PriorityPolicy {
    fn default() -> Self {
        PriorityPolicy {
            matrix: default_matrix(),
            impact_label: d_impact_label(),
            default_impact: d_medium(),
            nodes_high: d_10(),
            nodes_medium: d_3(),
        }
    }
}
impl Default for FlappingPolicy {
    fn default() -> Self {
        FlappingPolicy {
            changes: d_5(),
            window: d_10m(),
            settle_for: d_10m(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            grouping: Grouping::default(),
            incident: IncidentPolicy::default(),
            problem: ProblemPolicy::default(),
            priority: PriorityPolicy::default(),
            flapping: FlappingPolicy::default(),
            maintenance: Vec::new(),
            sla: BTreeMap::new(),
            calendars: BTreeMap::new(),
            business_hours: BTreeMap::new(),
            escalation: Vec::new(),
            notify: NotifyPolicy::default(),
            groups: BTreeMap::new(),
            routes: Vec::new(),
            default_group: d_group(),
        }
    }
}

/// The facts a route can match on.
#[derive(Debug, Clone, Default)]
pub struct RouteFacts<'a> {
    pub category: Option<Category>,
    pub site: &'a str,
    pub node: &'a str,
    pub rule: &'a str,
    pub severity: Option<Severity>,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl Policy {
    /// Read `policy.toml` from the rules folder; a missing file means all defaults.
    pub fn load_dir(dir: &Path) -> Result<Policy, ConfigError> {
        let path = dir.join("policy.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Policy::from_toml_str(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    pub fn from_toml_str(path: &Path, text: &str) -> Result<Policy, ConfigError> {
        let mut policy: Policy = toml::from_str(text).map_err(|e| ConfigError::parse(path, e))?;
        for (name, c) in &policy.calendars {
            let cal = super::calendar::Calendar::from_config(name, c).map_err(|message| {
                ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                }
            })?;
            policy.business_hours.insert(name.clone(), cal);
        }
        for (priority, sla) in &policy.sla {
            if let Some(name) = &sla.calendar
                && !policy.business_hours.contains_key(name)
            {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "[sla.{}] counts in calendar {name:?}, but [calendar.{name}] is not defined",
                        priority.as_str()
                    ),
                });
            }
        }
        for route in &policy.routes {
            for key in route.match_.keys() {
                let known = matches!(
                    key.as_str(),
                    "category" | "site" | "node" | "rule" | "severity"
                ) || key.strip_prefix("labels.").is_some_and(|k| !k.is_empty());
                if !known {
                    return Err(ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: format!(
                            "route to {:?}: unknown match key {key:?} (use category, site, node, rule, severity or labels.<key>)",
                            route.group
                        ),
                    });
                }
            }
        }
        for (i, m) in policy.maintenance.iter().enumerate() {
            if policy.maintenance[..i].iter().any(|o| o.name == m.name) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!("maintenance {:?} is defined twice", m.name),
                });
            }
            if let Err(message) = super::maintenance::window_from_policy(m) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                });
            }
        }
        if policy.priority.nodes_medium > policy.priority.nodes_high {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: "[priority] nodes_medium must not be above nodes_high".into(),
            });
        }
        let levels: Vec<(String, Vec<String>)> = policy
            .escalation
            .iter()
            .map(|l| (l.name.clone(), l.notify.clone()))
            .collect();
        if let Err(message) = policy.notify.validate(&levels, &policy.groups) {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            });
        }
        Ok(policy)
    }

    /// Impact x urgency -> priority.
    pub fn priority(&self, impact: Level, urgency: Level) -> Priority {
        self.priority.matrix[impact.index()][urgency.index()]
    }

    /// Impact from how many nodes an incident affects (None below `nodes_medium`).
    pub fn impact_of_count(&self, nodes: usize) -> Option<Level> {
        let n = u32::try_from(nodes).unwrap_or(u32::MAX);
        if n >= self.priority.nodes_high {
            Some(Level::High)
        } else if n >= self.priority.nodes_medium {
            Some(Level::Medium)
        } else {
            None
        }
    }

    /// Business impact of a node, from its labels.
    pub fn impact(&self, labels: &BTreeMap<String, String>) -> Level {
        labels
            .get(&self.priority.impact_label)
            .and_then(|v| Level::parse(v))
            .unwrap_or(self.priority.default_impact)
    }

    /// The assignment group for a ticket with these facts (first matching route wins).
    pub fn route(&self, facts: &RouteFacts<'_>) -> String {
        for route in &self.routes {
            let all = route.match_.iter().all(|(key, pattern)| {
                let value = match key.as_str() {
                    "category" => facts.category.map(|c| c.as_str().to_string()),
                    "site" => Some(facts.site.to_string()),
                    "node" => Some(facts.node.to_string()),
                    "rule" => Some(facts.rule.to_string()),
                    "severity" => facts.severity.map(|s| s.as_str().to_string()),
                    other => other
                        .strip_prefix("labels.")
                        .and_then(|k| facts.labels.and_then(|l| l.get(k)).cloned()),
                };
                value.is_some_and(|v| crate::rules::expr::glob_match(pattern, &v))
            });
            if all {
                return route.group.clone();
            }
        }
        self.default_group.clone()
    }

    /// Tickets of this priority tell escalation level 1 as soon as they open (default: P1).
    pub fn notify_at_once(&self, priority: Priority) -> bool {
        self.sla
            .get(&priority)
            .and_then(|s| s.notify_at_once)
            .unwrap_or(priority == Priority::P1)
    }

    /// The business-hours calendar a priority's SLA counts in (None: around the clock).
    fn sla_calendar(&self, priority: Priority) -> Option<&super::calendar::Calendar> {
        let name = self.sla.get(&priority)?.calendar.as_ref()?;
        self.business_hours.get(name)
    }

    /// When `budget` of a priority's SLA time has passed since `from`: in its calendar's
    /// business hours, or around the clock.
    pub fn sla_due(&self, priority: Priority, from: Millis, budget: Millis) -> Option<Millis> {
        match self.sla_calendar(priority) {
            Some(cal) => cal.due(from, budget),
            None => Some(from.saturating_add(budget.max(0))),
        }
    }

    /// SLA time of a priority spent in `[from, to)`.
    pub fn sla_elapsed(&self, priority: Priority, from: Millis, to: Millis) -> Millis {
        match self.sla_calendar(priority) {
            Some(cal) => cal.business_ms(from, to),
            None => (to - from).max(0),
        }
    }

    pub fn verify_ms(&self) -> Millis {
        millis(self.incident.verify_for)
    }

    pub fn grouping_ms(&self) -> Millis {
        millis(self.grouping.window)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let p = Policy::from_toml_str(
            Path::new("policy.toml"),
            r#"
            [grouping]
            window = "5m"
            [incident]
            verify_for = "10m"
            [problem]
            threshold = 3
            window = "7d"
            [priority]
            matrix = [["P1", "P2", "P3"], ["P2", "P3", "P4"], ["P3", "P4", "P4"]]
            [sla.P1]
            response = "15m"
            resolution = "4h"
            [[escalation]]
            name = "on-duty"
            after = "0s"
            notify = ["webhook:oncall"]
            [notify.webhook.oncall]
            url = "http://127.0.0.1:9000/hook"
            [[route]]
            match = { category = "network" }
            group = "network"
            "#,
        )
        .expect("design example");
        assert_eq!(p.priority(Level::High, Level::High), Priority::P1);
        assert_eq!(p.priority(Level::Low, Level::Medium), Priority::P4);
        assert_eq!(
            p.sla[&Priority::P1].resolution,
            Duration::from_secs(4 * 3600)
        );
        let facts = RouteFacts {
            category: Some(Category::Network),
            ..RouteFacts::default()
        };
        assert_eq!(p.route(&facts), "network");
        let facts = RouteFacts {
            category: Some(Category::Software),
            ..RouteFacts::default()
        };
        assert_eq!(p.route(&facts), "service-desk");
    }

    #[test]
    fn impact_from_labels() {
        let p = Policy::default();
        let labels: BTreeMap<String, String> =
            [("criticality".to_string(), "high".to_string())].into();
        assert_eq!(p.impact(&labels), Level::High);
        assert_eq!(p.impact(&BTreeMap::new()), Level::Medium);
    }

    #[test]
    fn refuses_bad_policy() {
        for text in [
            "[grouping]\nwindow = \"later\"",
            "[priority]\nmatrix = [[\"P9\"]]",
            "[[route]]\nmatch = { colour = \"red\" }\ngroup = \"x\"",
            "[[escalation]]\nname = \"a\"\nafter = \"0s\"\nnotify = [\"webhook:nope\"]",
            "[sla.P1]\nresponse = \"15m\"",
            "surprise = 1",
        ] {
            let err = Policy::from_toml_str(Path::new("policy.toml"), text)
                .expect_err(text)
                .to_string();
            assert!(
                err.starts_with("policy.toml: ") && !err.contains('\n'),
                "{err}"
            );
        }
    }

    /// The keys serde expects in a section, read from its "unknown field" message.
    fn keys_of(section: &str) -> Vec<String> {
        keys_of_text(&format!("[{section}]\nno_such_key = 1\n"))
    }

    /// The keys serde expects where a policy text has an unknown key.
    pub(crate) fn keys_of_text(text: &str) -> Vec<String> {
        let err = Policy::from_toml_str(Path::new("policy.toml"), text)
            .expect_err("unknown key refused")
            .to_string();
        let expected = err
            .split("expected")
            .nth(1)
            .unwrap_or_else(|| panic!("no key list in {err}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn correlation_doc_lists_every_policy_key_it_governs() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CORRELATION.md"),
        )
        .expect("docs/CORRELATION.md");
        for section in ["grouping", "incident", "problem", "flapping", "priority"] {
            let keys = keys_of(section);
            assert!(!keys.is_empty(), "{section}");
            for key in keys {
                let entry = format!("`[{section}] {key}`");
                assert!(
                    doc.contains(&entry),
                    "docs/CORRELATION.md does not document {entry}"
                );
            }
        }
        assert!(doc.contains("`[[maintenance]]`"));
        for key in [
            "name", "match", "start", "end", "duration", "every", "reason",
        ] {
            assert!(
                doc.contains(&format!("`{key}`")),
                "maintenance key {key} undocumented"
            );
        }
    }

    #[test]
    fn maintenance_and_flapping_sections_parse() {
        let p = Policy::from_toml_str(
            Path::new("policy.toml"),
            r#"
            [flapping]
            changes = 3
            window = "5m"
            settle_for = "2m"
            [priority]
            nodes_high = 20
            nodes_medium = 5
            [[maintenance]]
            name = "sunday patching"
            match = { "labels.role" = "web" }
            start = "2026-12-06T02:00:00Z"
            duration = "2h"
            every = "7d"
            reason = "OS updates"
            "#,
        )
        .expect("valid");
        assert_eq!(p.flapping.changes, 3);
        assert_eq!(p.impact_of_count(5), Some(Level::Medium));
        assert_eq!(p.impact_of_count(20), Some(Level::High));
        assert_eq!(p.impact_of_count(4), None);
        for bad in [
            "[[maintenance]]\nname = \"x\"\nstart = \"soon\"\nduration = \"1h\"",
            "[[maintenance]]\nname = \"x\"\nstart = \"2026-12-06T02:00:00Z\"",
            "[[maintenance]]\nname = \"x\"\nmatch = { colour = \"red\" }\nstart = \"2026-12-06T02:00:00Z\"\nduration = \"1h\"",
            "[priority]\nnodes_high = 2\nnodes_medium = 5",
        ] {
            let err = Policy::from_toml_str(Path::new("policy.toml"), bad)
                .expect_err(bad)
                .to_string();
            assert!(
                err.starts_with("policy.toml: ") && !err.contains('\n'),
                "{err}"
            );
        }
    }

    #[test]
    fn sla_targets_count_in_their_calendar() {
        let p = Policy::from_toml_str(
            Path::new("policy.toml"),
            r#"
            [calendar.office]
            timezone = "UTC"
            hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }
            [sla.P3]
            response = "4h"
            resolution = "3d"
            calendar = "office"
            [sla.P1]
            response = "15m"
            resolution = "4h"
            "#,
        )
        .expect("valid");
        const H: Millis = 3_600_000;
        // 2026-11-27 (Friday) 15:00 UTC.
        let friday_15 = 1_795_791_600_000;
        // P3: 2 business hours left on Friday, 2 more on Monday from 09:00.
        assert_eq!(
            p.sla_due(Priority::P3, friday_15, 4 * H),
            Some(friday_15 + 68 * H) // Monday 11:00
        );
        assert_eq!(
            p.sla_elapsed(Priority::P3, friday_15, friday_15 + 24 * H),
            2 * H
        );
        // P1 counts around the clock.
        assert_eq!(p.sla_due(Priority::P1, friday_15, H), Some(friday_15 + H));
        assert_eq!(
            p.sla_elapsed(Priority::P1, friday_15, friday_15 + 24 * H),
            24 * H
        );
        let err = Policy::from_toml_str(
            Path::new("policy.toml"),
            "[sla.P1]\nresponse = \"15m\"\nresolution = \"4h\"\ncalendar = \"nope\"",
        )
        .expect_err("unknown calendar")
        .to_string();
        assert!(err.contains("[calendar.nope] is not defined"), "{err}");
    }

    #[test]
    fn shipped_policy_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        Policy::load_dir(&dir).expect("shipped policy is valid");
    }
}
