//! A node's inventory as the engine keeps it: compact JSON, the part a fleet shares apart.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_protocol::Inventory;

/// A node's inventory, kept as compact JSON text in two parts: the node's own fields
/// (hostname, addresses, sysName) and the rest (OS, kernel, CPU, memory, agent version,
/// sysDescr), which a fleet has few distinct sets of and the node table shares between
/// nodes ([`Nodes::inventory`](super::model::Nodes::inventory)). The decoded [`Inventory`]
/// took a 264-byte struct and a string for each of its ten fields: the engine's largest
/// part per node after the node table itself (388 bytes a node asked for, 27 MB of live
/// heap at 50,000 nodes; BENCHMARKS.md, 2026-12-03 evening). A copy shares both texts; the
/// store writes them as one object; a ticket decodes it when it is opened. It serialises
/// as the inventory object, so snapshots and the API are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeInventory {
    pub(super) common: Arc<String>,
    pub(super) own: Arc<str>,
}

impl NodeInventory {
    /// An inventory of its own, shared with no other node (until
    /// [`Nodes::insert`](super::model::Nodes::insert)).
    pub fn new(inventory: &Inventory) -> Self {
        let (common, own) = Self::split(inventory);
        NodeInventory {
            common: Arc::new(common),
            own: own.into(),
        }
    }

    /// The two texts: everything but the node's own fields, and those.
    pub(super) fn split(inventory: &Inventory) -> (String, String) {
        let own = Inventory {
            hostname: inventory.hostname.clone(),
            ip_addresses: inventory.ip_addresses.clone(),
            sys_name: inventory.sys_name.clone(),
            ..Inventory::default()
        };
        let common = Inventory {
            hostname: None,
            ip_addresses: Vec::new(),
            sys_name: None,
            ..inventory.clone()
        };
        // A struct of strings, numbers and a list of strings always serialises; "{}" (no
        // fields) only if that ever stopped being true.
        let text = |i: &Inventory| serde_json::to_string(i).unwrap_or_else(|_| "{}".to_string());
        (text(&common), text(&own))
    }

    /// The whole inventory as one JSON object, as stored in `nodes.inventory`.
    pub fn to_json(&self) -> String {
        let (own, common) = (self.own.trim(), self.common.trim());
        match (own, common) {
            (own, "{}") => own.to_string(),
            ("{}", common) => common.to_string(),
            // Two non-empty objects: the first without its `}`, then the second's fields.
            (own, common) => format!("{},{}", &own[..own.len() - 1], &common[1..]),
        }
    }

    /// The inventory's fields (its own texts, so they always decode; empty if they did not).
    pub fn decode(&self) -> Inventory {
        let own: Inventory = serde_json::from_str(&self.own).unwrap_or_default();
        Inventory {
            hostname: own.hostname,
            ip_addresses: own.ip_addresses,
            sys_name: own.sys_name,
            ..serde_json::from_str(&self.common).unwrap_or_default()
        }
    }

    /// The same shared texts (not merely equal ones): an equal birth keeps the node's texts
    /// rather than holding a second copy of them.
    pub fn same(&self, other: &NodeInventory) -> bool {
        Arc::ptr_eq(&self.common, &other.common) && Arc::ptr_eq(&self.own, &other.own)
    }
}

impl Serialize for NodeInventory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.decode().serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeInventory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Inventory::deserialize(d).map(|i| NodeInventory::new(&i))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::NodeRow;

    pub(in crate::engine) fn host_inventory() -> Inventory {
        Inventory {
            hostname: Some("web-01".into()),
            os: Some("Debian GNU/Linux".into()),
            os_version: Some("12".into()),
            kernel: Some("6.1.0-27-amd64".into()),
            arch: Some("x86_64".into()),
            cpu_model: Some("Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz".into()),
            cpu_cores: Some(8),
            memory_bytes: Some(34_359_738_368),
            ip_addresses: vec!["10.0.0.5".into(), "fe80::1".into()],
            agent_version: Some("0.1.0".into()),
            ..Inventory::default()
        }
    }

    #[test]
    fn a_node_inventory_keeps_every_field_and_serialises_as_the_inventory() {
        let inv = host_inventory();
        let kept = NodeInventory::new(&inv);
        assert_eq!(kept.decode(), inv);
        // Stored as the compact object the store's JSON column takes.
        let stored: serde_json::Value = serde_json::from_str(&kept.to_json()).expect("json");
        assert_eq!(
            stored["cpu_model"],
            "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
        );
        assert_eq!(stored["ip_addresses"][1], "fe80::1");
        assert!(
            stored.get("sys_descr").is_none(),
            "absent fields stay absent"
        );

        // A node row serialises it as the object (snapshots, the API), and reads it back.
        let mut row = NodeRow::new("dc1", "web-01", 5);
        row.inventory = Some(kept.clone());
        let json = serde_json::to_value(&row).expect("serialise");
        assert_eq!(
            json["inventory"],
            serde_json::to_value(&inv).expect("inventory")
        );
        let back: NodeRow = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, row);
        assert_eq!(
            back.inventory.as_ref().map(NodeInventory::decode),
            Some(inv)
        );

        // Copies share the text; an equal one built apart is equal but not the same.
        assert!(kept.same(&kept.clone()));
        let again = NodeInventory::new(&host_inventory());
        assert_eq!(again, kept);
        assert!(!again.same(&kept));
        // Only the node's own fields, only the common ones, none: each kept whole.
        for inv in [
            Inventory {
                hostname: Some("h".into()),
                ..Inventory::default()
            },
            Inventory {
                os: Some("Debian GNU/Linux".into()),
                ..Inventory::default()
            },
            Inventory::default(),
        ] {
            let kept = NodeInventory::new(&inv);
            assert_eq!(kept.decode(), inv);
            let stored: Inventory = serde_json::from_str(&kept.to_json()).expect("json");
            assert_eq!(stored, inv);
        }

        // A row without one: `null`, and a missing field reads as none too.
        let mut json = serde_json::to_value(NodeRow::new("dc1", "x", 5)).expect("serialise");
        assert_eq!(json["inventory"], serde_json::Value::Null);
        json.as_object_mut().expect("object").remove("inventory");
        let none: NodeRow = serde_json::from_value(json).expect("a row without inventory");
        assert_eq!(none.inventory, None);
    }
}
