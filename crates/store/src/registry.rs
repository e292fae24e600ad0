//! The key layout the API server, the controllers and the node agents share.
//!
//! An object lives at `/registry/GROUP/PLURAL/NAMESPACE/NAME` (cluster-scoped ones without
//! the namespace), with `core` for the legacy group. Values are the object's JSON without
//! `metadata.resourceVersion`: that is the key's mod revision, stamped in on every read, so a
//! stored object never carries a stale one.

use crate::{KeyValue, Revision};

/// The key of one object.
pub fn key(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/registry/{}/{plural}/{ns}/{name}", group_dir(group)),
        None => format!("/registry/{}/{plural}/{name}", group_dir(group)),
    }
}

/// The prefix of a kind's objects: all of them (`namespace` `None`), or one namespace's.
pub fn prefix(group: &str, plural: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/registry/{}/{plural}/{ns}/", group_dir(group)),
        None => format!("/registry/{}/{plural}/", group_dir(group)),
    }
}

fn group_dir(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group
    }
}

/// A stored object as the API shows it: its JSON with `metadata.resourceVersion` set to the
/// key's mod revision. `None` if the value is not a JSON object (it never is, unless the store
/// was written by something else).
pub fn decode(kv: &KeyValue) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(&kv.value).ok()?;
    stamp(&mut v, kv.mod_revision);
    Some(v)
}

/// Sets `metadata.resourceVersion` to `rev`.
pub fn stamp(v: &mut serde_json::Value, rev: Revision) {
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert(
            "resourceVersion".into(),
            serde_json::Value::String(rev.to_string()),
        );
    }
}

/// The bytes to store for an object: its JSON without `metadata.resourceVersion`.
pub fn encode(v: &serde_json::Value) -> Vec<u8> {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(
            key("", "pods", Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(key("", "nodes", None, "n1"), "/registry/core/nodes/n1");
        assert_eq!(
            prefix("coordination.k8s.io", "leases", Some("kube-node-lease")),
            "/registry/coordination.k8s.io/leases/kube-node-lease/"
        );
        assert!(key("", "pods", Some("default"), "web").starts_with(&prefix("", "pods", None)));
    }

    #[test]
    fn encode_drops_and_decode_stamps_the_revision() {
        let v = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "3"}});
        let bytes = encode(&v);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: "k".into(),
            value: bytes,
            create_revision: 5,
            mod_revision: 9,
            lease: 0,
        };
        assert_eq!(decode(&kv).unwrap()["metadata"]["resourceVersion"], "9");
    }
}
