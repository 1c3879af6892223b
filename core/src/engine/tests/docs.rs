//! The policy reference in docs/TICKETS.md lists every key the ticket sections accept.

use std::path::Path;

use crate::engine::policy::tests::keys_of_text as keys_of;

#[test]
fn tickets_doc_lists_every_policy_key_of_sla_escalation_routing_and_notify() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/TICKETS.md"))
            .expect("docs/TICKETS.md");
    let sections = [
        ("[sla.P1]\nno_such_key = 1\n", "[sla.Px]"),
        ("[[escalation]]\nno_such_key = 1\n", "[[escalation]]"),
        ("[[route]]\nno_such_key = 1\n", "[[route]]"),
        ("[notify]\nno_such_key = 1\n", "[notify]"),
        (
            "[notify.webhook.x]\nno_such_key = 1\n",
            "[notify.webhook.<name>]",
        ),
        (
            "[notify.email.x]\nno_such_key = 1\n",
            "[notify.email.<name>]",
        ),
        ("[notify.mqtt.x]\nno_such_key = 1\n", "[notify.mqtt.<name>]"),
        ("[group.x]\nno_such_key = 1\n", "[group.<name>]"),
        ("[calendar.x]\nno_such_key = 1\n", "[calendar.<name>]"),
    ];
    for (text, name) in sections {
        let keys = keys_of(text);
        assert!(!keys.is_empty(), "{name}");
        for key in keys {
            // Nested tables are documented with their own sections.
            if name == "[notify]" && matches!(key.as_str(), "webhook" | "email" | "mqtt") {
                continue;
            }
            let entry = format!("`{name} {key}`");
            assert!(
                doc.contains(&entry),
                "docs/TICKETS.md does not document {entry}"
            );
        }
    }
    assert!(doc.contains("`default_group`"));
}
