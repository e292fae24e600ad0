//! The workload kinds' API rules (`apps/v1` Deployment, ReplicaSet, StatefulSet and
//! DaemonSet): what a create defaults, what a write must satisfy (a selector that selects the
//! template's labels), what may not change, and the `/scale` subresource (`autoscaling/v1`
//! Scale) that `kubectl scale` and autoscalers use.

use serde_json::{json, Map, Value};

use crate::objects::{Objects, WriteOptions};
use crate::patch::{self, PatchType};
use crate::resources::Resource;
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::validate;
use crate::validate::set_default;

/// Kubernetes' defaults for a workload on create (and every write).
pub(crate) fn defaults(kind: &str, obj: &mut Value) {
    let Some(spec) = obj["spec"].as_object_mut() else {
        return;
    };
    if kind != "DaemonSet" {
        set_default(spec, "replicas", json!(1));
    }
    if kind == "StatefulSet" {
        set_default(spec, "podManagementPolicy", json!("OrderedReady"));
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(
            spec,
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        let st = spec.entry("updateStrategy").or_insert(json!({}));
        if let Some(st) = st.as_object_mut() {
            set_default(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                let ru = st.entry("rollingUpdate").or_insert(json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    set_default(ru, "partition", json!(0));
                }
            }
        }
        for t in spec
            .get_mut("volumeClaimTemplates")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(ts) = t.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(ts, "volumeMode", json!("Filesystem"));
            }
            if let Some(t) = t.as_object_mut() {
                set_default(t, "apiVersion", json!("v1"));
                set_default(t, "kind", json!("PersistentVolumeClaim"));
            }
        }
    }
    if kind == "DaemonSet" {
        set_default(spec, "revisionHistoryLimit", json!(10));
        let st = spec.entry("updateStrategy").or_insert(json!({}));
        if let Some(st) = st.as_object_mut() {
            set_default(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                let ru = st.entry("rollingUpdate").or_insert(json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    set_default(ru, "maxUnavailable", json!(1));
                    set_default(ru, "maxSurge", json!(0));
                }
            }
        }
    }
    if kind == "Deployment" {
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
        let strategy = spec.entry("strategy").or_insert(json!({}));
        if let Some(st) = strategy.as_object_mut() {
            set_default(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                let ru = st.entry("rollingUpdate").or_insert(json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    set_default(ru, "maxUnavailable", json!("25%"));
                    set_default(ru, "maxSurge", json!("25%"));
                }
            }
        }
    }
    if let Some(ps) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        validate::pod_spec_defaults(ps);
    }
}

/// A workload's own rules: a selector that is not empty and selects the template's labels,
/// a pod template that is a valid pod, replicas not negative, a strategy that makes sense.
pub(crate) fn check(r: &Resource, v: &Value) -> Result<(), ApiError> {
    if !matches!(
        r.kind,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
    ) {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let spec = &v["spec"];
    let mut causes: Vec<(String, String)> = Vec::new();
    let sel = &spec["selector"];
    let empty_selector = sel["matchLabels"].as_object().is_none_or(Map::is_empty)
        && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty);
    if sel.is_null() {
        causes.push(("spec.selector".into(), "Required value".into()));
    } else if empty_selector {
        causes.push((
            "spec.selector".into(),
            "Invalid value: \"{}\": empty selector is invalid for deployment".into(),
        ));
    } else {
        match LabelSelector::from_k8s(sel) {
            Err(e) => causes.push(("spec.selector".into(), format!("Invalid value: {e}"))),
            Ok(s) => {
                let labels = &spec["template"]["metadata"]["labels"];
                if !s.matches(Some(labels)) {
                    causes.push((
                        "spec.template.metadata.labels".into(),
                        format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            compact(labels)
                        ),
                    ));
                }
            }
        }
    }
    if spec["replicas"].as_i64().is_some_and(|n| n < 0) {
        causes.push((
            "spec.replicas".into(),
            "Invalid value: must be greater than or equal to 0".into(),
        ));
    }
    let ps = &spec["template"]["spec"];
    causes.extend(crate::objects::pod_spec_causes(ps, "spec.template.spec"));
    if !matches!(ps["restartPolicy"].as_str(), None | Some("Always")) {
        causes.push((
            "spec.template.spec.restartPolicy".into(),
            format!(
                "Unsupported value: {}: supported values: \"Always\"",
                ps["restartPolicy"]
            ),
        ));
    }
    if r.kind == "StatefulSet" {
        causes.extend(stateful_set_causes(spec));
    }
    if r.kind == "DaemonSet" {
        let st = &spec["updateStrategy"];
        match st["type"].as_str() {
            None | Some("OnDelete") => {}
            Some("RollingUpdate") => {
                let mu = int_or_percent(&st["rollingUpdate"]["maxUnavailable"]);
                if mu.is_none() && !st["rollingUpdate"]["maxUnavailable"].is_null() {
                    causes.push((
                        "spec.updateStrategy.rollingUpdate.maxUnavailable".into(),
                        "Invalid value: must be an integer or a percentage (e.g. '25%')".into(),
                    ));
                }
            }
            Some(other) => causes.push((
                "spec.updateStrategy.type".into(),
                format!("Unsupported value: \"{other}\": supported values: \"OnDelete\", \"RollingUpdate\""),
            )),
        }
    }
    if r.kind == "Deployment" {
        let st = &spec["strategy"];
        match st["type"].as_str() {
            Some("Recreate") if !st["rollingUpdate"].is_null() => causes.push((
                "spec.strategy.rollingUpdate".into(),
                "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
            )),
            Some("Recreate") => {}
            Some("RollingUpdate") | None => {
                let ru = &st["rollingUpdate"];
                let surge = int_or_percent(&ru["maxSurge"]);
                let unavail = int_or_percent(&ru["maxUnavailable"]);
                for (f, val) in [("maxSurge", &surge), ("maxUnavailable", &unavail)] {
                    if val.is_none() && !ru[f].is_null() {
                        causes.push((
                            format!("spec.strategy.rollingUpdate.{f}"),
                            format!("Invalid value: {}: must be an integer or a percentage (e.g. '25%')", ru[f]),
                        ));
                    }
                }
                if surge == Some(IntOrPercent::Int(0))
                    && unavail == Some(IntOrPercent::Int(0))
                {
                    causes.push((
                        "spec.strategy.rollingUpdate.maxUnavailable".into(),
                        "Invalid value: 0: may not be 0 when `maxSurge` is 0".into(),
                    ));
                }
            }
            Some(other) => causes.push((
                "spec.strategy.type".into(),
                format!(
                    "Unsupported value: \"{other}\": supported values: \"Recreate\", \"RollingUpdate\""
                ),
            )),
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

/// A StatefulSet's own rules: its policies, and claim templates that are claims.
fn stateful_set_causes(spec: &Value) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    match spec["podManagementPolicy"].as_str() {
        None | Some("OrderedReady" | "Parallel") => {}
        Some(other) => causes.push((
            "spec.podManagementPolicy".into(),
            format!(
                "Unsupported value: \"{other}\": supported values: \"OrderedReady\", \"Parallel\""
            ),
        )),
    }
    let st = &spec["updateStrategy"];
    match st["type"].as_str() {
        None | Some("OnDelete") => {}
        Some("RollingUpdate") => {
            if st["rollingUpdate"]["partition"]
                .as_i64()
                .is_some_and(|p| p < 0)
            {
                causes.push((
                    "spec.updateStrategy.rollingUpdate.partition".into(),
                    "Invalid value: must be greater than or equal to 0".into(),
                ));
            }
        }
        Some(other) => causes.push((
            "spec.updateStrategy.type".into(),
            format!(
                "Unsupported value: \"{other}\": supported values: \"OnDelete\", \"RollingUpdate\""
            ),
        )),
    }
    for (i, t) in spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("spec.volumeClaimTemplates[{i}]");
        if t["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            causes.push((format!("{at}.metadata.name"), "Required value".into()));
        }
        if t["spec"]["accessModes"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            causes.push((
                format!("{at}.spec.accessModes"),
                "Required value: at least 1 access mode is required".into(),
            ));
        }
        if t["spec"]["resources"]["requests"]["storage"].is_null() {
            causes.push((
                format!("{at}.spec.resources[storage]"),
                "Required value".into(),
            ));
        }
    }
    causes
}

/// `apps/v1` selectors do not change after create; a StatefulSet changes only its replicas,
/// ordinals, template, update strategy, claim retention policy and `minReadySeconds`.
pub(crate) fn check_update(r: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    if r.kind == "StatefulSet" {
        let strip = |v: &Value| {
            let mut s = v["spec"].clone();
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        if strip(old) != strip(new) {
            let name = new["metadata"]["name"].as_str().unwrap_or("");
            return Err(ApiError::invalid(
                r.kind,
                name,
                vec![(
                    "spec".into(),
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
                )],
            ));
        }
    }
    if old["spec"]["selector"] != new["spec"]["selector"] {
        let name = new["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::invalid(
            r.kind,
            name,
            vec![(
                "spec.selector".into(),
                format!(
                    "Invalid value: {}: field is immutable",
                    compact(&new["spec"]["selector"])
                ),
            )],
        ));
    }
    Ok(())
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// An `IntOrString` of a rolling update: a count or a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    /// A number of pods.
    Int(i64),
    /// A percentage of the desired replicas.
    Percent(i64),
}

/// Parses `maxSurge`/`maxUnavailable`: `2`, `"2"` is refused as Kubernetes does (a string
/// must end in `%`), `"25%"`.
pub fn int_or_percent(v: &Value) -> Option<IntOrPercent> {
    match v {
        Value::Number(n) => n.as_i64().filter(|n| *n >= 0).map(IntOrPercent::Int),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .filter(|p| *p >= 0)
            .map(IntOrPercent::Percent),
        _ => None,
    }
}

impl IntOrPercent {
    /// The count for `total` replicas, rounding a percentage up or down.
    pub fn resolve(self, total: i64, round_up: bool) -> i64 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let x = total * p;
                if round_up {
                    (x + 99) / 100
                } else {
                    x / 100
                }
            }
        }
    }
}

/// A LabelSelector object as the string form (`app=web,tier in (a,b)`), as a Scale's
/// `status.selector` carries it.
pub fn selector_string(sel: &Value) -> String {
    LabelSelector::from_k8s(sel)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The `autoscaling/v1` Scale of a Deployment, ReplicaSet or StatefulSet.
pub fn scale_of(v: &Value) -> Value {
    let m = &v["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": v["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": v["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&v["spec"]["selector"]),
        },
    })
}

/// GET `.../scale`.
pub async fn get_scale(
    objects: &Objects,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    Ok(scale_of(&objects.get(r, ns, name).await?))
}

/// PUT or PATCH `.../scale`: the Scale as sent (`patch` `None`) or as patched, written as
/// the object's `spec.replicas`.
pub async fn write_scale(
    objects: &Objects,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    body: &[u8],
    patch: Option<&str>,
    wo: &WriteOptions,
) -> Result<Value, ApiError> {
    for _ in 0..16 {
        let live = objects.get(r, ns, name).await?;
        let current = scale_of(&live);
        let wanted: Value = match patch {
            None => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the Scale is not JSON: {e}")))?,
            Some(ct) => {
                let ct = ct.split(';').next().unwrap_or("").trim();
                let pt = match PatchType::from_content_type(ct) {
                    // A Scale has no lists: a strategic merge is a merge.
                    Some(PatchType::StrategicMerge) => PatchType::Merge,
                    Some(PatchType::Apply) | None => {
                        return Err(ApiError::unsupported_media(format!(
                            "the body of the request was in an unknown format ({ct}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
                        )))
                    }
                    Some(p) => p,
                };
                patch::apply_patch("Scale", &current, pt, body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
        };
        let replicas = match &wanted["spec"]["replicas"] {
            Value::Null => 0,
            v => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    name,
                    vec![(
                        "spec.replicas".into(),
                        format!("Invalid value: {v}: must be greater than or equal to 0"),
                    )],
                )
            })?,
        };
        if let Some(rv) = wanted["metadata"]["resourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            if Some(rv) != live["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::conflict(
                    &r.qualified(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(replicas);
        let rev = live["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        match objects.write(r, ns, name, &live, new, rev, wo).await {
            Ok(v) => return Ok(scale_of(&v)),
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        &r.qualified(),
        name,
        "too many concurrent changes; try again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn deployment(sel: Value, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": sel, "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn a_selector_must_select_the_template() {
        let r = find("apps", "v1", "deployments").unwrap();
        let mut ok = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        defaults("Deployment", &mut ok);
        check(r, &ok).unwrap();
        assert_eq!(ok["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(ok["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let bad = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"}));
        let e = check(r, &bad).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e
            .message
            .contains("`selector` does not match template `labels`"));
        let none = deployment(Value::Null, json!({"app": "web"}));
        assert!(check(r, &none)
            .unwrap_err()
            .message
            .contains("spec.selector"));
        let empty = deployment(json!({}), json!({"app": "web"}));
        assert!(check(r, &empty).is_err());
    }

    #[test]
    fn rolling_update_bounds() {
        assert_eq!(
            int_or_percent(&json!("25%")),
            Some(IntOrPercent::Percent(25))
        );
        assert_eq!(int_or_percent(&json!(2)), Some(IntOrPercent::Int(2)));
        assert_eq!(int_or_percent(&json!("2")), None);
        assert_eq!(IntOrPercent::Percent(25).resolve(10, true), 3);
        assert_eq!(IntOrPercent::Percent(25).resolve(10, false), 2);
        let r = find("apps", "v1", "deployments").unwrap();
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert!(check(r, &d).unwrap_err().message.contains("may not be 0"));
    }

    #[test]
    fn scale_carries_the_selector_as_a_string() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["replicas"] = json!(3);
        d["status"] = json!({"replicas": 2});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
    }
}
