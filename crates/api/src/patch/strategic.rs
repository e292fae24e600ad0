//! Strategic merge patch (`application/strategic-merge-patch+json`), what `kubectl apply`
//! (client side), `kubectl edit`, `kubectl patch` and `kubectl scale` send.
//!
//! Semantics, after `k8s.io/apimachinery/pkg/util/strategicpatch`: maps merge recursively and a
//! `null` deletes a field; a list is replaced whole unless [`super::merge_keys`] gives it a merge
//! key (elements merged with the element of the same key, new ones appended) or makes it a set
//! of scalars (union). Directives:
//! - `$patch: replace` in a map replaces the map; as an element of a list, the list.
//! - `$patch: delete` in a list element deletes the element with that key; in a map, deletes
//!   the map from its parent (Kubernetes leaves an empty map; removing it is what users mean).
//! - `$deleteFromPrimitiveList/<f>: [..]` removes those values from the scalar list `f`.
//! - `$setElementOrder/<f>: [..]` orders list `f` as given (keys, or values for scalars);
//!   elements it does not name follow, in their previous order. Kubernetes interleaves those
//!   with the named ones instead; the named ones come out the same.
//! - `$retainKeys: [..]` drops the map's fields not named (the `retainKeys` strategy of e.g.
//!   a Deployment's `spec.strategy`); a patch field not named is an error.
//!
//! The same merge, with directives refused, is the merge step of server-side apply.

use serde_json::{Map, Value};

use super::merge_keys::{list_strategy, ListStrategy};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to `original`, an object of `kind` (which picks the merge
/// keys). Kinds without entries in the table (custom resources) merge as JSON merge patch with
/// the directives honoured.
pub fn strategic_merge(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let merger = Merger {
        kind,
        directives: true,
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(
        merger.merge_map("", original, patch)?.unwrap_or_default(),
    ))
}

/// The merge step of server-side apply: `applied` (nulls already dropped) merged into
/// `original` with the same list semantics; `$` keys are refused.
pub(crate) fn merge_applied(
    kind: &str,
    original: &Value,
    applied: &Map<String, Value>,
) -> Result<Value, PatchError> {
    let merger = Merger {
        kind,
        directives: false,
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(
        merger.merge_map("", original, applied)?.unwrap_or_default(),
    ))
}

struct Merger<'a> {
    kind: &'a str,
    /// False for server-side apply, where a `$` key is not a directive but an error.
    directives: bool,
}

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError::BadStrategicPatch(msg.into())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Where a path is shown in an error: `.spec.containers`, or `the object` at the root.
fn shown(path: &str) -> String {
    if path.is_empty() {
        "the object".into()
    } else {
        format!(".{path}")
    }
}

impl Merger<'_> {
    /// Merges `patch` into `original` at `path`. `None` means the map itself was deleted
    /// (`$patch: delete`).
    fn merge_map(
        &self,
        path: &str,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, PatchError> {
        if !self.directives {
            if let Some(key) = patch.keys().find(|k| k.starts_with('$')) {
                return Err(bad(format!(
                    "{}: field {key:?} is not allowed in an applied configuration",
                    shown(path)
                )));
            }
        }
        match patch.get(DIRECTIVE) {
            None => {}
            Some(Value::String(d)) if d == "replace" => {
                let rest: Map<String, Value> = patch
                    .iter()
                    .filter(|(k, _)| *k != DIRECTIVE)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                return self.merge_map(path, Map::new(), &rest);
            }
            Some(Value::String(d)) if d == "delete" => return Ok(None),
            Some(other) => {
                return Err(bad(format!(
                    "{}: unknown $patch directive {other} (expected \"replace\" or \"delete\")",
                    shown(path)
                )))
            }
        }
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let retain = string_list(retain).ok_or_else(|| {
                bad(format!(
                    "{}: $retainKeys must be a list of strings",
                    shown(path)
                ))
            })?;
            if let Some(stray) = patch
                .iter()
                .find(|(k, v)| !k.starts_with('$') && !v.is_null() && !retain.contains(&k.as_str()))
                .map(|(k, _)| k)
            {
                return Err(PatchError::RetainKeysMismatch(format!(
                    "{}: field {stray:?} is patched but not listed in $retainKeys",
                    shown(path)
                )));
            }
            original.retain(|k, _| retain.contains(&k.as_str()));
        }
        for (key, values) in patch {
            let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE) else {
                continue;
            };
            let Value::Array(values) = values else {
                return Err(bad(format!(
                    "{}: {key} must be a list",
                    shown(&join(path, field))
                )));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !values.contains(v));
            }
        }
        for (key, value) in patch {
            if key.starts_with('$') {
                let known = key == DIRECTIVE
                    || key == RETAIN_KEYS
                    || key.starts_with(DELETE_FROM_PRIMITIVE)
                    || key.starts_with(SET_ELEMENT_ORDER);
                if !known {
                    return Err(bad(format!("{}: unknown directive {key:?}", shown(path))));
                }
                continue;
            }
            let child = join(path, key);
            match value {
                Value::Null => {
                    original.remove(key);
                }
                Value::Object(sub) => {
                    let base = match original.remove(key) {
                        Some(Value::Object(map)) => map,
                        _ => Map::new(),
                    };
                    if let Some(merged) = self.merge_map(&child, base, sub)? {
                        original.insert(key.clone(), Value::Object(merged));
                    }
                }
                Value::Array(items) => {
                    let base = match original.remove(key) {
                        Some(Value::Array(list)) => list,
                        _ => Vec::new(),
                    };
                    let merged = self.merge_list(&child, base, items)?;
                    original.insert(key.clone(), Value::Array(merged));
                }
                scalar => {
                    original.insert(key.clone(), scalar.clone());
                }
            }
        }
        for (key, order) in patch {
            let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            let child = join(path, field);
            let Value::Array(order) = order else {
                return Err(bad(format!("{}: {key} must be a list", shown(&child))));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                self.reorder(&child, list, order)?;
            }
        }
        Ok(Some(original))
    }

    fn merge_list(
        &self,
        path: &str,
        original: Vec<Value>,
        patch: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        let replace_marker = |v: &Value| {
            self.directives
                && v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")
                && v.as_object().is_some_and(|m| m.len() == 1)
        };
        let replace = patch.iter().any(replace_marker);
        match list_strategy(self.kind, path) {
            None => Ok(patch
                .iter()
                .filter(|v| !replace_marker(v))
                .cloned()
                .collect()),
            Some(ListStrategy::Set) => {
                let mut out = if replace { Vec::new() } else { original };
                for item in patch.iter().filter(|v| !replace_marker(v)) {
                    if item.is_object() || item.is_array() {
                        return Err(bad(format!(
                            "{}: a list of scalars cannot hold {item}",
                            shown(path)
                        )));
                    }
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Some(ListStrategy::MergeKey(key)) => {
                let mut out = if replace { Vec::new() } else { original };
                for item in patch.iter().filter(|v| !replace_marker(v)) {
                    let Value::Object(fields) = item else {
                        return Err(bad(format!(
                            "{}: element {item} is not a map, but the list merges on key {key:?}",
                            shown(path)
                        )));
                    };
                    let Some(id) = fields.get(key) else {
                        return Err(bad(format!(
                            "{}: element {item} does not contain declared merge key {key:?}",
                            shown(path)
                        )));
                    };
                    let at = out.iter().position(|v| v.get(key) == Some(id));
                    let base = match at.map(|i| out.remove(i)) {
                        Some(Value::Object(map)) => map,
                        _ => Map::new(),
                    };
                    let merged = if self.directives
                        && fields.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
                    {
                        None
                    } else {
                        self.merge_map(path, base, fields)?
                    };
                    if let Some(merged) = merged {
                        let at = at.unwrap_or(out.len());
                        out.insert(at, Value::Object(merged));
                    }
                }
                Ok(out)
            }
        }
    }

    /// `$setElementOrder`: named elements first, in the order given, then the rest.
    fn reorder(
        &self,
        path: &str,
        list: &mut Vec<Value>,
        order: &[Value],
    ) -> Result<(), PatchError> {
        let key = match list_strategy(self.kind, path) {
            Some(ListStrategy::MergeKey(key)) => Some(key),
            _ => None,
        };
        let mut rest = std::mem::take(list);
        for entry in order {
            let wanted = match key {
                Some(key) => entry.get(key).ok_or_else(|| {
                    bad(format!(
                        "{}: $setElementOrder entry {entry} lacks merge key {key:?}",
                        shown(path)
                    ))
                })?,
                None => entry,
            };
            let found = rest.iter().position(|item| match key {
                Some(key) => item.get(key) == Some(wanted),
                None => item == wanted,
            });
            if let Some(i) = found {
                list.push(rest.remove(i));
            }
        }
        list.append(&mut rest);
        Ok(())
    }
}

fn string_list(value: &Value) -> Option<Vec<&str>> {
    value.as_array()?.iter().map(Value::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge(kind, &original, &patch).unwrap()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.0",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80}]},
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1"]}
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }}
            }
        })
    }

    fn containers(v: &Value) -> &Vec<Value> {
        v.pointer("/spec/template/spec/containers")
            .unwrap()
            .as_array()
            .unwrap()
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let out = smp(
            "Deployment",
            deployment(),
            json!({"metadata": {"labels": {"app": null, "tier": "front"}}, "spec": {"replicas": 3}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"tier": "front"}));
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["spec"]["strategy"]["type"], "RollingUpdate");
    }

    #[test]
    fn kubectl_apply_patch_changes_image_keeps_others() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "web", "image": "nginx:1.1"}]
        }}}});
        let out = smp("Deployment", deployment(), patch);
        let c = containers(&out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["image"], "nginx:1.1");
        assert_eq!(c[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(c[1]["name"], "sidecar");
    }

    #[test]
    fn set_element_order_reorders_and_appends_new() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "log"}, {"name": "sidecar"}, {"name": "web"}],
            "containers": [{"name": "log", "image": "fluent"}]
        }}}});
        let out = smp("Deployment", deployment(), patch);
        let names: Vec<_> = containers(&out).iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, vec!["log", "sidecar", "web"]);
        // Elements the order does not name go after.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}]
        }}}});
        let out = smp("Deployment", deployment(), patch);
        let names: Vec<_> = containers(&out).iter().map(|c| c["name"].clone()).collect();
        assert_eq!(names, vec!["sidecar", "web"]);
    }

    #[test]
    fn patch_delete_removes_env_var_by_name() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web",
                "$setElementOrder/env": [{"name": "A"}],
                "env": [{"name": "B", "$patch": "delete"}]}]
        }}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
    }

    #[test]
    fn keyed_elements_merge_and_new_ones_append() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "A", "value": "9"}, {"name": "C", "value": "3"}],
             "ports": [{"containerPort": 443}]}
        ]}}}});
        let out = smp("Deployment", deployment(), patch);
        let web = &containers(&out)[0];
        assert_eq!(
            web["env"],
            json!([{"name": "A", "value": "9"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            web["ports"],
            json!([{"containerPort": 80}, {"containerPort": 443}])
        );
    }

    #[test]
    fn lists_without_key_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "sidecar", "args": ["sleep", "2"]}]
        }}}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(
            out.pointer("/spec/template/spec/tolerations").unwrap(),
            &json!([{"key": "b", "operator": "Exists"}])
        );
        assert_eq!(containers(&out)[1]["args"], json!(["sleep", "2"]));
    }

    #[test]
    fn patch_replace_on_list_and_map() {
        let patch = json!({"spec": {
            "strategy": {"$patch": "replace", "type": "Recreate"},
            "template": {"spec": {"containers": [
                {"$patch": "replace"}, {"name": "only", "image": "x"}
            ]}}
        }});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            containers(&out),
            &vec![json!({"name": "only", "image": "x"})]
        );
    }

    #[test]
    fn patch_delete_on_map_removes_it() {
        let out = smp(
            "Deployment",
            deployment(),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
        );
        assert!(out["spec"].get("strategy").is_none());
    }

    #[test]
    fn retain_keys_drops_unlisted_fields() {
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null
        }}});
        let out = smp("Deployment", deployment(), patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let stray = json!({"spec": {"strategy": {"$retainKeys": ["type"], "other": 1}}});
        assert!(matches!(
            strategic_merge("Deployment", &deployment(), &stray),
            Err(PatchError::RetainKeysMismatch(_))
        ));
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let pod = json!({"kind": "Pod", "metadata": {"finalizers": ["a", "b"]}});
        let out = smp(
            "Pod",
            pod.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            "Pod",
            pod.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            "Pod",
            pod,
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
    }

    #[test]
    fn node_taints_and_service_ports_merge_by_key() {
        let node = json!({"kind": "Node", "spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}
        ]}});
        let out = smp(
            "Node",
            node,
            json!({"spec": {"taints": [{"key": "a", "$patch": "delete"}, {"key": "c", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoSchedule"}, {"key": "c", "effect": "NoExecute"}])
        );
        let svc = json!({"kind": "Service", "spec": {"ports": [{"port": 80, "name": "http"}]}});
        let out = smp(
            "Service",
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}])
        );
    }

    #[test]
    fn new_subtrees_lose_nulls_and_directives() {
        let out = smp(
            "Pod",
            json!({"kind": "Pod"}),
            json!({"spec": {"nodeName": null, "containers": [{"name": "a", "$setElementOrder/env": [], "x": null}]}}),
        );
        assert_eq!(
            out,
            json!({"kind": "Pod", "spec": {"containers": [{"name": "a"}]}})
        );
    }

    #[test]
    fn bad_patches_are_reported() {
        let pod = json!({"kind": "Pod", "spec": {"containers": []}});
        let err = |p: Value| strategic_merge("Pod", &pod, &p).unwrap_err().to_string();
        assert!(err(json!({"spec": {"containers": [{"image": "x"}]}}))
            .contains("does not contain declared merge key \"name\""));
        assert!(err(json!({"spec": {"containers": ["x"]}})).contains("not a map"));
        assert!(err(json!({"spec": {"$patch": "explode"}})).contains("unknown $patch directive"));
        assert!(err(json!({"spec": {"$bogus": 1}})).contains("unknown directive"));
        assert!(err(json!({"metadata": {"finalizers": [{"a": 1}]}})).contains("scalars"));
        assert!(err(json!([1])).contains("JSON object"));
    }
}
