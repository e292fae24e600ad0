//! Server-side apply and field management: who owns which fields (`metadata.managedFields`),
//! what an apply removes, and when it conflicts.
//!
//! A practical subset of sigs.k8s.io/structured-merge-diff, driven by the same merge-key table
//! as strategic merge instead of OpenAPI schemas:
//! - An apply owns exactly the fields its configuration sets ((`fieldset`)); it merges
//!   into the live object like a strategic merge patch, then removes the fields the same manager
//!   applied last time but no longer sets, unless another manager owns them (or something under
//!   them). Maps left empty by a removal go too.
//! - It conflicts where it sets a field to a value other than the live one and another manager
//!   (Apply or Update) owns that field; `force` takes the field over instead. Same value: the
//!   ownership is shared.
//! - Any other write ([`record_update`]) takes ownership of the fields it changes, without
//!   conflicts, under the manager's `Update` entry.
//! - An object without managed fields that is applied to gets a `before-first-apply` entry
//!   owning everything it had, so the apply conflicts with what was there, as in Kubernetes.
//!
//! Left out: OpenAPI-typed validation (unknown fields are kept, not refused), multi-field list
//! keys, `i:` ownership of positional lists (atomic lists are owned whole), per-subresource
//! ownership (`status` is never owned), managedFields entry sorting and time-bucketing, and
//! the "unset a field by applying null" rule (null drops the field from the configuration).

use serde_json::{json, Map, Value};

use super::fieldset::{self, covers, FieldSet, Path, Walker};
use super::strategic::merge_applied;
use super::PatchError;

/// The manager Kubernetes assigns an object's fields to on its first server-side apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One field an apply wanted that another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The manager owning the field.
    pub manager: String,
    /// That manager's operation, `Apply` or `Update`.
    pub operation: String,
    /// The API version that manager wrote with.
    pub api_version: String,
    /// The field, as people read it: `.spec.containers[name="web"].image`.
    pub field: String,
}

impl FieldConflict {
    /// The manager as Kubernetes names it in conflict messages: `"m" using v1` for an update,
    /// `"m"` for an apply.
    fn who(&self) -> String {
        if self.operation == "Update" && !self.api_version.is_empty() {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }
}

/// A server-side apply that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change: 409 Conflict. The message is Kubernetes':
    /// `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1:
    /// .spec.containers[name="web"].image`.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<FieldConflict>),
    /// The configuration is not an object with `apiVersion` and `kind`: 400 Bad Request.
    #[error("invalid applied configuration: {0}")]
    Invalid(String),
    /// The configuration does not merge (an element without its merge key, a `$` field):
    /// the status of the [`PatchError`].
    #[error(transparent)]
    Merge(#[from] PatchError),
}

impl ApplyError {
    /// The HTTP status the API answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflict(_) => 409,
            ApplyError::Invalid(_) => 400,
            ApplyError::Merge(e) => e.status_code(),
        }
    }

    /// The `reason` of the Kubernetes `Status`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflict(_) => "Conflict",
            ApplyError::Invalid(_) => "BadRequest",
            ApplyError::Merge(e) => e.reason(),
        }
    }
}

fn conflict_message(conflicts: &[FieldConflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.who(),
            one.field
        );
    }
    let mut managers: Vec<String> = conflicts.iter().map(FieldConflict::who).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for who in &managers {
        lines.push(format!("conflicts with {who}:"));
        for c in conflicts.iter().filter(|c| &c.who() == who) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let set = match (text("fieldsType").as_deref(), v.get("fieldsV1")) {
            (Some("FieldsV1") | None, Some(fields)) => fieldset::from_fields_v1(fields),
            _ => FieldSet::new(),
        };
        Some(Entry {
            manager: text("manager")?,
            operation: text("operation").unwrap_or_default(),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set,
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": fieldset::to_fields_v1(&self.set),
        });
        if let Some(time) = &self.time {
            v["time"] = json!(time);
        }
        if let Some(sub) = &self.subresource {
            v["subresource"] = json!(sub);
        }
        v
    }
}

fn read_entries(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Drops paths the object no longer has and entries left empty, then stores the entries.
fn write_entries(object: &mut Value, mut entries: Vec<Entry>) {
    for entry in &mut entries {
        entry.set.retain(|p| fieldset::get(object, p).is_some());
    }
    entries.retain(|e| !e.set.is_empty());
    if !object.is_object() {
        *object = json!({});
    }
    let metadata = object
        .as_object_mut()
        .expect("made an object above")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    let list: Vec<Value> = entries.iter().map(Entry::to_json).collect();
    let metadata = metadata.as_object_mut().expect("made an object above");
    if list.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

/// Removes nulls from maps, recursively: in an applied configuration a null sets nothing.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The applied configuration as merged: nulls, `status` and `metadata.managedFields` dropped.
fn prepare_applied(applied: &Value) -> Result<(Map<String, Value>, String, String), ApplyError> {
    let Value::Object(map) = applied else {
        return Err(ApplyError::Invalid("it must be a JSON object".into()));
    };
    let field = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApplyError::Invalid(format!("{k} must be set")))
    };
    let (api_version, kind) = (field("apiVersion")?, field("kind")?);
    let mut cleaned = applied.clone();
    strip_nulls(&mut cleaned);
    let Value::Object(mut cleaned) = cleaned else {
        unreachable!("cloned from an object")
    };
    cleaned.remove("status");
    if let Some(Value::Object(metadata)) = cleaned.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    Ok((cleaned, api_version, kind))
}

/// The merge of an apply without field management: what `PATCH` with
/// `application/apply-patch+yaml` does when the caller has no manager to record.
pub(crate) fn apply_without_ownership(
    target: &Value,
    applied: &Value,
) -> Result<Value, ApplyError> {
    let (cleaned, _, kind) = prepare_applied(applied)?;
    Ok(merge_applied(&kind, target, &cleaned)?)
}

/// Server-side apply of `applied` by `manager` onto `live` (`None`: the object is created),
/// at time `now` (RFC 3339). Returns the new object with its `metadata.managedFields`; the
/// caller still sets what the server owns (uid, resourceVersion, timestamps) and validates.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let (cleaned, api_version, kind) = prepare_applied(applied)?;
    let walker = Walker { kind: &kind };
    let cleaned_value = Value::Object(cleaned);
    let new_set = walker
        .applied_set(&cleaned_value)
        .map_err(ApplyError::Invalid)?;
    let live_value = live.cloned().unwrap_or_else(|| json!({}));

    let mut entries = live.map(read_entries).unwrap_or_default();
    if let (Some(live), true) = (live, entries.is_empty()) {
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: "Update".into(),
            api_version: live
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(&api_version)
                .to_owned(),
            time: Some(now.to_owned()),
            subresource: None,
            set: walker.all_fields(live),
        });
    }

    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, Path)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.is(manager, "Apply") {
            continue;
        }
        for path in new_set.intersection(&entry.set) {
            // An element or set value is the same by construction; its fields are compared.
            let whole_element = path
                .last()
                .is_some_and(|s| s.starts_with("k:") || s.starts_with("v:"));
            if whole_element
                || fieldset::get(&live_value, path) == fieldset::get(&cleaned_value, path)
            {
                continue;
            }
            conflicts.push(FieldConflict {
                manager: entry.manager.clone(),
                operation: entry.operation.clone(),
                api_version: entry.api_version.clone(),
                field: fieldset::display(path),
            });
            taken.push((i, path.clone()));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflict(conflicts));
    }
    for (i, path) in taken {
        entries[i].set.remove(&path);
    }

    let Value::Object(cleaned) = &cleaned_value else {
        unreachable!("built from a map")
    };
    let mut merged = merge_applied(&kind, &live_value, cleaned)?;

    let previous = entries
        .iter()
        .find(|e| e.is(manager, "Apply"))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !e.is(manager, "Apply"))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let candidates: Vec<&Path> = previous
        .difference(&new_set)
        .filter(|p| !covers(&others, p) && !covers(&new_set, p) && !is_key_of_kept_element(p))
        .collect();
    // A path under one that goes goes with it.
    let mut gone: Vec<&Path> = candidates
        .iter()
        .filter(|p| {
            !candidates
                .iter()
                .any(|q| q.len() < p.len() && p.starts_with(q))
        })
        .copied()
        .collect();
    // Deepest first, so a parent is judged after its children went.
    gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in gone {
        if fieldset::remove(&mut merged, path) {
            prune_empty_parents(&mut merged, path, &new_set, &others);
        }
    }

    let mine = Entry {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version,
        time: Some(now.to_owned()),
        subresource: None,
        set: new_set,
    };
    match entries.iter_mut().find(|e| e.is(manager, "Apply")) {
        Some(entry) => *entry = mine,
        None => entries.push(mine),
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Whether the path is a key field of a list element (`k:{"name":"a"}` then `f:name`): the
/// element stays while anything of it is owned, and keeps its key.
fn is_key_of_kept_element(path: &[String]) -> bool {
    let [.., element, field] = path else {
        return false;
    };
    let (Some(key), Some(field)) = (element.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|key| key.contains_key(field))
}

/// After a removal, removes the maps it left empty that nobody owns, up to (not including)
/// the top-level fields (`metadata`, `spec`).
fn prune_empty_parents(object: &mut Value, path: &[String], mine: &FieldSet, others: &FieldSet) {
    let mut parent = &path[..path.len() - 1];
    while parent.len() >= 2 {
        let empty = fieldset::get(object, parent)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if !empty
            || !parent.last().is_some_and(|s| s.starts_with("f:"))
            || covers(mine, parent)
            || covers(others, parent)
        {
            return;
        }
        fieldset::remove(object, parent);
        parent = &parent[..parent.len() - 1];
    }
}

/// Records a non-apply write (create, update, any patch but apply) by `manager`: its
/// `operation` entry (normally `Update`) gains the fields that changed from `old` to `new`
/// (everything when `old` is `None`), and other managers lose them. Returns `new` with its
/// `metadata.managedFields`. Managed fields the client changed itself are taken as given; an
/// explicit empty list resets them.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    now: &str,
) -> Value {
    let kind = new
        .get("kind")
        .or_else(|| old.and_then(|o| o.get("kind")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let walker = Walker { kind };
    let old_fields = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let mut entries = match new.pointer("/metadata/managedFields") {
        Some(given @ Value::Array(_)) if Some(given) != old_fields => read_entries(new),
        _ => old.map(read_entries).unwrap_or_default(),
    };
    let changed = walker.changed_set(old, new);
    if !changed.is_empty() {
        for entry in entries.iter_mut().filter(|e| !e.is(manager, operation)) {
            entry.set.retain(|p| !changed.contains(p));
        }
        let api_version = new
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match entries.iter_mut().find(|e| e.is(manager, operation)) {
            Some(entry) => {
                entry.set.extend(changed);
                entry.time = Some(now.to_owned());
                entry.api_version = api_version;
            }
            None => entries.push(Entry {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                api_version,
                time: Some(now.to_owned()),
                subresource: None,
                set: changed,
            }),
        }
    }
    let mut out = new.clone();
    write_entries(&mut out, entries);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T00:01:00Z";

    fn deployment(image: &str, extra_label: bool) -> Value {
        let mut d = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}}
            }
        });
        if extra_label {
            d["metadata"]["labels"]["tier"] = json!("front");
        }
        d
    }

    fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    #[test]
    fn apply_creates_with_managed_fields() {
        let out =
            server_side_apply(None, &deployment("nginx:1", true), "kubectl", false, T1).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        let e = entry(&out, "kubectl").unwrap();
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T1);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn second_apply_removes_dropped_field() {
        let first =
            server_side_apply(None, &deployment("nginx:1", true), "kubectl", false, T1).unwrap();
        let second = server_side_apply(
            Some(&first),
            &deployment("nginx:2", false),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(second["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            second.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("nginx:2"))
        );
        let e = entry(&second, "kubectl").unwrap();
        assert_eq!(e["time"], T2);
        assert!(e["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none());
    }

    #[test]
    fn apply_keeps_field_another_manager_owns() {
        let first =
            server_side_apply(None, &deployment("nginx:1", true), "kubectl", false, T1).unwrap();
        // Another applier sets the same label to the same value: shared ownership.
        let ops = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web", "labels": {"tier": "front"}}});
        let shared = server_side_apply(Some(&first), &ops, "ops", false, T2).unwrap();
        // A label added by an update is not the applier's to remove either.
        let mut labelled = shared.clone();
        labelled["metadata"]["labels"]["owner"] = json!("me");
        let labelled = record_update(Some(&shared), &labelled, "kubectl-label", "Update", T2);
        let second = server_side_apply(
            Some(&labelled),
            &deployment("nginx:1", false),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(
            second["metadata"]["labels"],
            json!({"app": "web", "owner": "me", "tier": "front"})
        );
        // Once the other applier lets go, the label goes.
        let ops_gone =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        let third = server_side_apply(Some(&second), &ops_gone, "ops", false, T2).unwrap();
        assert_eq!(
            third["metadata"]["labels"],
            json!({"app": "web", "owner": "me"})
        );
    }

    #[test]
    fn apply_conflicts_with_update_manager_unless_forced() {
        let first =
            server_side_apply(None, &deployment("nginx:1", false), "kubectl", false, T1).unwrap();
        let mut edited = first.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:edited");
        let edited = record_update(Some(&first), &edited, "kubectl-edit", "Update", T2);
        assert!(entry(&edited, "kubectl-edit").is_some());

        let err = server_side_apply(
            Some(&edited),
            &deployment("nginx:2", false),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 409);
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: \
             .spec.template.spec.containers[name=\"web\"].image"
        );
        let ApplyError::Conflict(list) = &err else {
            panic!("{err}")
        };
        assert_eq!(list[0].manager, "kubectl-edit");

        let forced = server_side_apply(
            Some(&edited),
            &deployment("nginx:2", false),
            "kubectl",
            true,
            T2,
        )
        .unwrap();
        assert_eq!(
            forced.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("nginx:2"))
        );
        // Ownership moved: the editor's entry, now empty, is gone.
        assert!(entry(&forced, "kubectl-edit").is_none());
    }

    #[test]
    fn same_value_shares_without_conflict() {
        let first = server_side_apply(None, &deployment("nginx:1", false), "a", false, T1).unwrap();
        let both =
            server_side_apply(Some(&first), &deployment("nginx:1", false), "b", false, T2).unwrap();
        assert!(entry(&both, "a").is_some() && entry(&both, "b").is_some());
        let err = server_side_apply(Some(&both), &deployment("nginx:3", false), "b", false, T2)
            .unwrap_err();
        // Another applier is named without version.
        assert!(
            err.to_string().contains("conflict with \"a\": .spec"),
            "{err}"
        );
    }

    #[test]
    fn conflicts_are_grouped_by_manager() {
        let first = server_side_apply(None, &deployment("nginx:1", false), "a", false, T1).unwrap();
        let mut other = deployment("nginx:2", false);
        other["spec"]["replicas"] = json!(5);
        let err = server_side_apply(Some(&first), &other, "b", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n\
             - .spec.template.spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn first_apply_on_unmanaged_object_conflicts_with_before_first_apply() {
        let live = deployment("nginx:1", false);
        let err = server_side_apply(
            Some(&live),
            &deployment("nginx:2", false),
            "kubectl",
            false,
            T1,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"before-first-apply\" using apps/v1"),
            "{err}"
        );
        let ok = server_side_apply(
            Some(&live),
            &deployment("nginx:1", false),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        assert!(entry(&ok, BEFORE_FIRST_APPLY).is_some());
    }

    #[test]
    fn apply_removes_container_it_no_longer_lists() {
        let mut two = deployment("nginx:1", false);
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log", "image": "fluent"}));
        let first = server_side_apply(None, &two, "kubectl", false, T1).unwrap();
        let second = server_side_apply(
            Some(&first),
            &deployment("nginx:1", false),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(
            second.pointer("/spec/template/spec/containers").unwrap(),
            &json!([{"name": "web", "image": "nginx:1"}])
        );
    }

    #[test]
    fn apply_keeps_element_another_manager_changed() {
        let mut two = deployment("nginx:1", false);
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log", "image": "fluent"}));
        let first = server_side_apply(None, &two, "kubectl", false, T1).unwrap();
        let mut edited = first.clone();
        edited["spec"]["template"]["spec"]["containers"][1]["image"] = json!("fluent:2");
        let edited = record_update(Some(&first), &edited, "kubectl-edit", "Update", T2);
        let second = server_side_apply(
            Some(&edited),
            &deployment("nginx:1", false),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        // The editor still owns the image, so the element stays, with its key.
        assert_eq!(
            second.pointer("/spec/template/spec/containers/1").unwrap(),
            &json!({"name": "log", "image": "fluent:2"})
        );
    }

    #[test]
    fn apply_unions_and_removes_finalizers() {
        let with = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
        let first = server_side_apply(None, &with(json!(["a", "b"])), "m", false, T1).unwrap();
        let mut other = first.clone();
        other["metadata"]["finalizers"] = json!(["a", "b", "c"]);
        let other = record_update(Some(&first), &other, "controller", "Update", T2);
        let second = server_side_apply(Some(&other), &with(json!(["a"])), "m", false, T2).unwrap();
        assert_eq!(second["metadata"]["finalizers"], json!(["a", "c"]));
        assert_eq!(
            entry(&second, "controller").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"c\"": {}}}})
        );
    }

    #[test]
    fn client_side_apply_then_server_side_apply_conflicts() {
        // kubectl apply (client side) creates, then patches the image with a strategic patch.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let created = record_update(None, &pod, "kubectl-client-side-apply", "Update", T1);
        let patched = super::super::apply_patch(
            "Pod",
            &created,
            super::super::PatchType::StrategicMerge,
            br#"{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"name":"web","image":"nginx:2"}]}}"#,
        )
        .unwrap();
        let patched = record_update(
            Some(&created),
            &patched,
            "kubectl-client-side-apply",
            "Update",
            T2,
        );
        let mut applied = pod.clone();
        applied["spec"]["containers"][0]["image"] = json!("nginx:3");
        let err = server_side_apply(Some(&patched), &applied, "kubectl", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: \
             .spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn apply_validates_configuration() {
        let err = server_side_apply(None, &json!({"kind": "Pod"}), "m", false, T1).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(err.to_string().contains("apiVersion must be set"));
        let bad =
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"image": "x"}]}});
        let err = server_side_apply(None, &bad, "m", false, T1).unwrap_err();
        assert!(err.to_string().contains("merge key \"name\""), "{err}");
        let dollar = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"$patch": "replace"}});
        assert!(server_side_apply(None, &dollar, "m", false, T1).is_err());
    }

    #[test]
    fn record_update_on_create_owns_everything() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}});
        let out = record_update(None, &cm, "kubectl-create", "Update", T1);
        let e = entry(&out, "kubectl-create").unwrap();
        assert_eq!(e["operation"], "Update");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
    }

    #[test]
    fn record_update_moves_ownership_and_drops_removed_fields() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c"}, "data": {"k": "v", "j": "w"}});
        let created = record_update(None, &cm, "creator", "Update", T1);
        let mut edited = created.clone();
        edited["data"]["k"] = json!("changed");
        edited["data"].as_object_mut().unwrap().remove("j");
        let edited = record_update(Some(&created), &edited, "editor", "Update", T2);
        assert_eq!(
            entry(&edited, "editor").unwrap()["fieldsV1"],
            json!({"f:data": {"f:k": {}}})
        );
        assert_eq!(
            entry(&edited, "creator").unwrap()["fieldsV1"],
            json!({"f:data": {}})
        );
        // A write that changes nothing leaves the entries alone.
        let same = record_update(Some(&edited), &edited, "noop", "Update", T2);
        assert!(entry(&same, "noop").is_none());
        assert_eq!(
            same["metadata"]["managedFields"],
            edited["metadata"]["managedFields"]
        );
    }

    #[test]
    fn record_update_accepts_explicit_reset() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let created = record_update(None, &cm, "creator", "Update", T1);
        let mut reset = created.clone();
        reset["metadata"]["managedFields"] = json!([]);
        let out = record_update(Some(&created), &reset, "editor", "Update", T2);
        assert!(out["metadata"].get("managedFields").is_none());
    }
}
