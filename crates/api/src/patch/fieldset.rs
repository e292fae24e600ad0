//! Field sets: which fields of an object a manager owns, as `metadata.managedFields` records
//! them (`FieldsV1`, after sigs.k8s.io/structured-merge-diff `fieldpath`).
//!
//! A path is a list of segments, each in its FieldsV1 spelling: `f:<field>` a map field,
//! `k:{"name":"web"}` the element of a keyed list with that key, `v:"x"` a value of a set
//! list, `i:0` a position (read, never written: positional lists are owned whole). A set is
//! sorted, so a path's descendants follow it. In FieldsV1 a set is a tree of objects; a node
//! that is itself a member and has children carries `".": {}`, a member without children is
//! `{}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::merge_keys::{list_strategy, ListStrategy};

/// A path in FieldsV1 segment spelling.
pub(crate) type Path = Vec<String>;
/// A set of paths.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Fields no manager owns: identity and server-set metadata (structured-merge-diff's
/// `stripmeta`), and the main resource's `status`, which its own subresource manages.
const IGNORED_TOP: &[&str] = &["apiVersion", "kind", "status"];
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Whether `key` under the dotted `parent` path is left out of field sets.
fn ignored(parent: &str, key: &str) -> bool {
    match parent {
        "" => IGNORED_TOP.contains(&key),
        "metadata" => IGNORED_METADATA.contains(&key),
        _ => false,
    }
}

/// The `k:` segment of a keyed element.
fn key_segment(key: &str, id: &Value) -> String {
    let mut map = Map::new();
    map.insert(key.to_owned(), id.clone());
    format!("k:{}", Value::Object(map))
}

fn value_segment(v: &Value) -> String {
    format!("v:{v}")
}

fn join(dotted: &str, key: &str) -> String {
    if dotted.is_empty() {
        key.to_owned()
    } else {
        format!("{dotted}.{key}")
    }
}

/// Walks objects with the kind's list strategies.
pub(crate) struct Walker<'a> {
    /// The kind, for the merge-key table.
    pub kind: &'a str,
}

impl Walker<'_> {
    /// The fields an applied configuration sets: its leaves (scalars, nulls, empty maps, empty
    /// and atomic lists), the elements of keyed lists and the values of set lists; not the maps on the way.
    /// An element without its key, or two with the same key or value, is an error naming the
    /// list.
    pub fn applied_set(&self, object: &Value) -> Result<FieldSet, String> {
        let mut out = FieldSet::new();
        if let Value::Object(map) = object {
            self.applied_map(map, "", &mut Vec::new(), &mut out)?;
        }
        Ok(out)
    }

    fn applied_map(
        &self,
        map: &Map<String, Value>,
        dotted: &str,
        path: &mut Path,
        out: &mut FieldSet,
    ) -> Result<(), String> {
        for (key, value) in map {
            if ignored(dotted, key) {
                continue;
            }
            path.push(format!("f:{key}"));
            self.applied_value(value, &join(dotted, key), path, out)?;
            path.pop();
        }
        Ok(())
    }

    fn applied_value(
        &self,
        value: &Value,
        dotted: &str,
        path: &mut Path,
        out: &mut FieldSet,
    ) -> Result<(), String> {
        match value {
            Value::Object(map) if !map.is_empty() => self.applied_map(map, dotted, path, out)?,
            // An empty list is a leaf: applying `[]` owns the list.
            Value::Array(items) if items.is_empty() => {
                out.insert(path.clone());
            }
            Value::Array(items) => match list_strategy(self.kind, dotted) {
                Some(ListStrategy::MergeKey(key)) => {
                    for item in items {
                        let (Some(id), Value::Object(fields)) = (item.get(key), item) else {
                            return Err(format!(
                                "{}: element {item} does not contain declared merge key {key:?}",
                                display(path)
                            ));
                        };
                        path.push(key_segment(key, id));
                        if !out.insert(path.clone()) {
                            return Err(format!("{}: duplicate entries", display(path)));
                        }
                        self.applied_map(fields, dotted, path, out)?;
                        path.pop();
                    }
                }
                Some(ListStrategy::Set) => {
                    for item in items {
                        if item.is_object() || item.is_array() {
                            return Err(format!(
                                "{}: a set holds scalars, not {item}",
                                display(path)
                            ));
                        }
                        path.push(value_segment(item));
                        if !out.insert(path.clone()) {
                            return Err(format!("{}: duplicate entries", display(path)));
                        }
                        path.pop();
                    }
                }
                None => {
                    out.insert(path.clone());
                }
            },
            _ => {
                out.insert(path.clone());
            }
        }
        Ok(())
    }

    /// Every field of an object, the maps on the way included: what an update owns of what it
    /// creates.
    pub fn all_fields(&self, object: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        self.changed(None, object, "", &mut Vec::new(), &mut out);
        out
    }

    /// The fields an update from `old` to `new` added or changed: changed leaves, and whole
    /// added subtrees (maps on the way included).
    pub fn changed_set(&self, old: Option<&Value>, new: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        self.changed(old, new, "", &mut Vec::new(), &mut out);
        out
    }

    fn changed(
        &self,
        old: Option<&Value>,
        new: &Value,
        dotted: &str,
        path: &mut Path,
        out: &mut FieldSet,
    ) {
        let root = path.is_empty();
        match new {
            Value::Object(map) => {
                let old_map = old.and_then(Value::as_object);
                // Every object has metadata: it is never created, so never owned itself.
                let metadata = dotted == "metadata";
                if old_map.is_none() && !root && !metadata {
                    out.insert(path.clone());
                }
                for (key, value) in map {
                    if ignored(dotted, key) {
                        continue;
                    }
                    let before = old_map.and_then(|m| m.get(key));
                    if before == Some(value) {
                        continue;
                    }
                    path.push(format!("f:{key}"));
                    self.changed(before, value, &join(dotted, key), path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                let old_items = old.and_then(Value::as_array);
                match list_strategy(self.kind, dotted) {
                    Some(strategy) => {
                        if old_items.is_none() {
                            out.insert(path.clone());
                        }
                        let old_items = old_items.map(Vec::as_slice).unwrap_or_default();
                        for item in items {
                            match strategy {
                                ListStrategy::MergeKey(key) => {
                                    let Some(id) = item.get(key) else { continue };
                                    let before = old_items.iter().find(|o| o.get(key) == Some(id));
                                    if before == Some(item) {
                                        continue;
                                    }
                                    path.push(key_segment(key, id));
                                    if before.is_none() {
                                        out.insert(path.clone());
                                    }
                                    if let Value::Object(fields) = item {
                                        for (k, v) in fields {
                                            let was = before.and_then(|b| b.get(k));
                                            if was == Some(v) {
                                                continue;
                                            }
                                            path.push(format!("f:{k}"));
                                            self.changed(was, v, &join(dotted, k), path, out);
                                            path.pop();
                                        }
                                    }
                                    path.pop();
                                }
                                ListStrategy::Set => {
                                    if !old_items.contains(item) {
                                        path.push(value_segment(item));
                                        out.insert(path.clone());
                                        path.pop();
                                    }
                                }
                            }
                        }
                    }
                    None => {
                        if old != Some(new) {
                            out.insert(path.clone());
                        }
                    }
                }
            }
            _ => {
                if old != Some(new) {
                    out.insert(path.clone());
                }
            }
        }
    }
}

/// The value at a path, if the object has it.
pub(crate) fn get<'v>(object: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut node = object;
    for seg in path {
        node = step(node, seg)?;
    }
    Some(node)
}

fn step<'v>(node: &'v Value, seg: &str) -> Option<&'v Value> {
    let (kind, rest) = seg.split_at_checked(2)?;
    match kind {
        "f:" => node.get(rest),
        "k:" => {
            let key: Map<String, Value> = serde_json::from_str(rest).ok()?;
            node.as_array()?
                .iter()
                .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
        }
        "v:" => {
            let value: Value = serde_json::from_str(rest).ok()?;
            node.as_array()?.iter().find(|item| **item == value)
        }
        "i:" => node.get(rest.parse::<usize>().ok()?),
        _ => None,
    }
}

/// Removes the value at a path; returns whether it was there.
pub(crate) fn remove(object: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut node = object;
    for seg in parent {
        let next = match find(node, seg) {
            Some(Loc::Key(k)) => node.get_mut(&k),
            Some(Loc::Index(i)) => node.get_mut(i),
            None => None,
        };
        let Some(next) = next else {
            return false;
        };
        node = next;
    }
    match (find(node, last), node) {
        (Some(Loc::Key(k)), Value::Object(map)) => map.remove(&k).is_some(),
        (Some(Loc::Index(i)), Value::Array(items)) => {
            items.remove(i);
            true
        }
        _ => false,
    }
}

/// Where in `node` the child `seg` names sits.
fn find(node: &Value, seg: &str) -> Option<Loc> {
    let found = step(node, seg)?;
    match node {
        Value::Object(_) => Some(Loc::Key(seg.get(2..)?.to_owned())),
        Value::Array(items) => items
            .iter()
            .position(|item| std::ptr::eq(item, found))
            .map(Loc::Index),
        _ => None,
    }
}

enum Loc {
    Key(String),
    Index(usize),
}

/// A path as people read it: `.spec.containers[name="web"].image`.
pub(crate) fn display(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        let rest = seg.get(2..).unwrap_or("");
        match seg.get(..2) {
            Some("f:") => {
                out.push('.');
                out.push_str(rest);
            }
            Some("k:") => {
                let key: Map<String, Value> = serde_json::from_str(rest).unwrap_or_default();
                out.push('[');
                for (i, (k, v)) in key.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}={v}");
                }
                out.push(']');
            }
            Some("v:") => {
                let _ = write!(out, "[={rest}]");
            }
            Some("i:") => {
                let _ = write!(out, "[{rest}]");
            }
            _ => out.push_str(seg),
        }
    }
    out
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

/// A set in FieldsV1 form.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            node = node.children.entry(seg.clone()).or_default();
        }
        node.member = true;
    }
    node_json(&root)
}

fn node_json(node: &Node) -> Value {
    let mut map = Map::new();
    if node.member && !node.children.is_empty() {
        map.insert(".".into(), Value::Object(Map::new()));
    }
    for (seg, child) in &node.children {
        map.insert(seg.clone(), node_json(child));
    }
    Value::Object(map)
}

/// A set read from FieldsV1; what is not an object is skipped.
pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(map) = value {
        read_node(map, &mut Vec::new(), &mut out);
    }
    out
}

fn read_node(map: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
    for (seg, child) in map {
        if seg == "." {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            continue;
        }
        path.push(seg.clone());
        match child {
            Value::Object(sub) if !sub.is_empty() => read_node(sub, path, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// Whether the set holds `path` or a path under it.
pub(crate) fn covers(set: &FieldSet, path: &[String]) -> bool {
    set.range(path.to_vec()..)
        .next()
        .is_some_and(|p| p.starts_with(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(segs: &[&str]) -> Path {
        segs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trips_with_dot_members() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                       "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}});
        let set = from_fields_v1(&v);
        assert!(set.contains(&p(&["f:metadata", "f:labels"])));
        assert!(set.contains(&p(&[
            "f:spec",
            "f:containers",
            "k:{\"name\":\"web\"}",
            "f:image"
        ])));
        assert!(!set.contains(&p(&["f:spec"])));
        assert_eq!(to_fields_v1(&set), v);
    }

    #[test]
    fn applied_set_has_leaves_and_keyed_elements() {
        let w = Walker { kind: "Pod" };
        let set = w
            .applied_set(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "x"}, "finalizers": ["f"]},
            "spec": {"containers": [{"name": "web", "image": "i", "args": ["a"]}], "volumes": [],
                     "securityContext": {}}
            }))
            .unwrap();
        let fields = to_fields_v1(&set);
        assert_eq!(
            fields,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"f\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {}, "f:args": {}, "f:image": {}, "f:name": {}}},
                    "f:securityContext": {}, "f:volumes": {}}
            })
        );
    }

    #[test]
    fn applied_set_refuses_duplicates_and_missing_keys() {
        let w = Walker { kind: "Pod" };
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert_eq!(
            w.applied_set(&dup).unwrap_err(),
            ".spec.containers[name=\"a\"]: duplicate entries"
        );
        let keyless = json!({"spec": {"containers": [{"image": "a"}]}});
        assert!(w
            .applied_set(&keyless)
            .unwrap_err()
            .contains("merge key \"name\""));
        let dup = json!({"metadata": {"finalizers": ["a", "a"]}});
        assert!(w.applied_set(&dup).unwrap_err().contains("duplicate"));
    }

    #[test]
    fn changed_set_marks_new_maps() {
        let w = Walker { kind: "ConfigMap" };
        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let new =
            json!({"metadata": {"name": "c", "labels": {"x": "y"}}, "data": {"a": "9", "b": "2"}});
        assert_eq!(
            to_fields_v1(&w.changed_set(Some(&old), &new)),
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
    }

    #[test]
    fn get_remove_and_display_follow_segments() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]},
                             "metadata": {"finalizers": ["f", "g"]}});
        let image = p(&["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]);
        assert_eq!(get(&pod, &image), Some(&json!("x")));
        assert_eq!(display(&image), ".spec.containers[name=\"a\"].image");
        assert!(remove(&mut pod, &image));
        assert!(remove(
            &mut pod,
            &p(&["f:spec", "f:containers", "k:{\"name\":\"b\"}"])
        ));
        assert!(remove(
            &mut pod,
            &p(&["f:metadata", "f:finalizers", "v:\"f\""])
        ));
        assert!(!remove(&mut pod, &p(&["f:nope"])));
        assert_eq!(
            pod,
            json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"finalizers": ["g"]}})
        );
        assert_eq!(display(&p(&["f:x", "v:\"f\"", "i:2"])), ".x[=\"f\"][2]");
    }

    #[test]
    fn covers_sees_descendants() {
        let set: FieldSet = [p(&["f:a", "f:b", "f:c"])].into_iter().collect();
        assert!(covers(&set, &p(&["f:a"])));
        assert!(covers(&set, &p(&["f:a", "f:b", "f:c"])));
        assert!(!covers(&set, &p(&["f:a", "f:bb"])));
        assert!(!covers(&set, &p(&["f:b"])));
    }
}
