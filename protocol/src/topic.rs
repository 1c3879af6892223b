//! MQTT topic layout: `<root>/v1/<site>/<node>/{status,report}` and `<root>/v1/events/<kind>`.

use crate::validate::is_valid_name;

/// Which per-node topic a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Status,
    Report,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Status => "status",
            TopicKind::Report => "report",
        }
    }
}

/// A parsed per-node topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub site: String,
    pub node: String,
    pub kind: TopicKind,
}

/// Why a topic string is not a tocsin per-node topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is not under {1:?}")]
    WrongRoot(String, String),
    #[error("topic {0:?} does not have the shape <root>/v1/<site>/<node>/<status|report>")]
    Shape(String),
    #[error("topic {0:?} names an unknown protocol version")]
    Version(String),
    #[error("topic {0:?}: site and node must match [A-Za-z0-9._-]{{1,64}}")]
    Name(String),
}

impl Topic {
    /// Parse `<root>/v1/<site>/<node>/<status|report>`.
    pub fn parse(root: &str, topic: &str) -> Result<Topic, TopicError> {
        let rest = topic
            .strip_prefix(root)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::WrongRoot(topic.to_string(), root.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [version, site, node, kind] = parts.as_slice() else {
            return Err(TopicError::Shape(topic.to_string()));
        };
        if *version != "v1" {
            return Err(TopicError::Version(topic.to_string()));
        }
        let kind = match *kind {
            "status" => TopicKind::Status,
            "report" => TopicKind::Report,
            _ => return Err(TopicError::Shape(topic.to_string())),
        };
        if !is_valid_name(site) || !is_valid_name(node) {
            return Err(TopicError::Name(topic.to_string()));
        }
        Ok(Topic {
            site: site.to_string(),
            node: node.to_string(),
            kind,
        })
    }

    /// The topic string this value stands for.
    pub fn render(&self, root: &str) -> String {
        format!(
            "{root}/v1/{}/{}/{}",
            self.site,
            self.node,
            self.kind.as_str()
        )
    }
}

/// `<root>/v1/<site>/<node>/status`
pub fn status_topic(root: &str, site: &str, node: &str) -> String {
    format!("{root}/v1/{site}/{node}/status")
}

/// `<root>/v1/<site>/<node>/report`
pub fn report_topic(root: &str, site: &str, node: &str) -> String {
    format!("{root}/v1/{site}/{node}/report")
}

/// `<root>/v1/events/<kind>`: incident / ticket / escalation events for other systems.
pub fn event_topic(root: &str, kind: &str) -> String {
    format!("{root}/v1/events/{kind}")
}

/// The subscription filters a collector needs: every node's status and report.
pub fn subscriptions(root: &str) -> [String; 2] {
    [
        format!("{root}/v1/+/+/status"),
        format!("{root}/v1/+/+/report"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_parser_round_trip() {
        let t = report_topic("tocsin", "dc1", "web-01");
        assert_eq!(t, "tocsin/v1/dc1/web-01/report");
        let parsed = Topic::parse("tocsin", &t).expect("valid topic");
        assert_eq!(parsed.site, "dc1");
        assert_eq!(parsed.node, "web-01");
        assert_eq!(parsed.kind, TopicKind::Report);
        assert_eq!(parsed.render("tocsin"), t);

        let s = status_topic("acme/mon", "dc.2", "core_sw-1");
        let parsed = Topic::parse("acme/mon", &s).expect("valid topic with nested root");
        assert_eq!(parsed.kind, TopicKind::Status);
        assert_eq!(parsed.node, "core_sw-1");
    }

    #[test]
    fn parser_refuses_bad_topics() {
        let cases = [
            ("other/v1/dc1/web/report", "root"),
            ("tocsin/v1/dc1/report", "shape"),
            ("tocsin/v1/dc1/web/extra/report", "shape"),
            ("tocsin/v1/dc1/web/metrics", "shape"),
            ("tocsin/v2/dc1/web/report", "version"),
            ("tocsin/v1/dc 1/web/report", "name"),
            ("tocsin/v1/dc1//report", "name"),
            ("tocsinx/v1/dc1/web/report", "root"),
        ];
        for (topic, want) in cases {
            let err = Topic::parse("tocsin", topic).expect_err(topic);
            let got = match err {
                TopicError::WrongRoot(..) => "root",
                TopicError::Shape(_) => "shape",
                TopicError::Version(_) => "version",
                TopicError::Name(_) => "name",
            };
            assert_eq!(got, want, "{topic}");
        }
        let long = format!("tocsin/v1/dc1/{}/report", "a".repeat(65));
        assert!(matches!(
            Topic::parse("tocsin", &long),
            Err(TopicError::Name(_))
        ));
    }

    #[test]
    fn subscriptions_cover_both_kinds() {
        let subs = subscriptions("tocsin");
        assert_eq!(subs[0], "tocsin/v1/+/+/status");
        assert_eq!(subs[1], "tocsin/v1/+/+/report");
        assert_eq!(
            event_topic("tocsin", "incident"),
            "tocsin/v1/events/incident"
        );
    }
}
