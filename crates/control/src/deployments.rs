//! The Deployment controller: a Deployment owns ReplicaSets, one per version of its pod
//! template, and moves pods from the old ones to the new one as its strategy says, as
//! Kubernetes' deployment controller does.
//!
//! - The new ReplicaSet is the owned one whose template is the Deployment's (the
//!   `pod-template-hash` label aside); it is made as `<name>-<hash>` when there is none, and
//!   gets the next revision (`deployment.kubernetes.io/revision`), also when an old one comes
//!   back by `kubectl rollout undo`.
//! - `RollingUpdate`: the new ReplicaSet grows while the total stays within `replicas +
//!   maxSurge`; old ones shrink while the available pods stay at least `replicas -
//!   maxUnavailable` (unhealthy old pods first). `Recreate`: old ones go to zero, and the
//!   new one grows once their pods are gone.
//! - `paused` stops the rollout (scaling still applies to the current ReplicaSets).
//! - Status: replicas, updated, ready, available and unavailable counts; the `Available` and
//!   `Progressing` conditions, with `ProgressDeadlineExceeded` once no progress was made for
//!   `progressDeadlineSeconds`; old ReplicaSets beyond `revisionHistoryLimit` are deleted.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::objects::Objects;
use corral_api::selector::LabelSelector;
use corral_api::workloads::{int_or_percent, IntOrPercent};
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, Change};
use crate::replicasets::{
    controller_ref, controller_uid, deleting, name, namespace, set_owner, uid,
};

const COMPONENT: &str = "deployment-controller";
/// The annotation that numbers a ReplicaSet's version of the template.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label that tells one template's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of a Deployment not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX_REPLICAS,
];

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("apps", "deployments", None),
        registry::prefix("apps", "replicasets", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(&store, &prefixes, "deployment controller", shutdown, || {
        sync(&store, &objects)
    })
    .await;
}

/// One pass over every Deployment; true while one is rolling out.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((ds, _)) = kv::list(store, &registry::prefix("apps", "deployments", None)).await else {
        return true;
    };
    if ds.is_empty() {
        return false;
    }
    let Ok((sets, _)) = kv::list(store, &registry::prefix("apps", "replicasets", None)).await
    else {
        return true;
    };
    let mut by_ns: HashMap<String, Vec<Value>> = HashMap::new();
    for rs in sets {
        by_ns
            .entry(namespace(&rs).to_string())
            .or_default()
            .push(rs);
    }
    let mut busy = false;
    for d in &ds {
        if deleting(d) {
            continue;
        }
        let sets = by_ns.get(namespace(d)).map(Vec::as_slice).unwrap_or(&[]);
        busy |= sync_one(store, objects, d, sets).await;
    }
    busy
}

/// The hash that names a template's ReplicaSet: FNV-1a of its JSON (keys sorted) and the
/// collision count, spelled in Kubernetes' safe alphabet (no vowels, no look-alikes).
pub fn template_hash(template: &Value, collisions: i64) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let h = corral_store::meta::fnv1a(text.bytes().chain(collisions.to_string().bytes()));
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// A ReplicaSet's template without the hash label: what is compared with the Deployment's.
fn bare_template(rs: &Value) -> Value {
    let mut t = rs["spec"]["template"].clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("labels");
        }
    }
    if t["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        t.as_object_mut().expect("template").remove("metadata");
    }
    t
}

fn same_template(rs: &Value, d: &Value) -> bool {
    let mut dt = d["spec"]["template"].clone();
    if dt["metadata"].as_object().is_some_and(|m| m.is_empty()) {
        dt.as_object_mut().expect("template").remove("metadata");
    }
    if let Some(m) = dt["metadata"].as_object_mut() {
        m.remove("creationTimestamp");
    }
    let mut rt = bare_template(rs);
    if let Some(m) = rt["metadata"].as_object_mut() {
        m.remove("creationTimestamp");
    }
    rt == dt
}

pub(crate) fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(v: &Value) -> i64 {
    v["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

fn st(v: &Value, f: &str) -> i64 {
    v["status"][f].as_i64().unwrap_or(0)
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, d: &Value, sets: &[Value]) -> bool {
    let ns = namespace(d);
    let me = uid(d);
    let Ok(sel) = LabelSelector::from_k8s(&d["spec"]["selector"]) else {
        return false;
    };
    let mut busy = false;
    let mut owned: Vec<Value> = Vec::new();
    for rs in sets {
        let key = registry::key("apps", "replicasets", Some(ns), name(rs));
        let labels = rs.get("metadata").and_then(|m| m.get("labels"));
        match controller_uid(rs) {
            Some(u) if u == me => {
                if sel.matches(labels) {
                    owned.push(rs.clone());
                } else if !deleting(rs) {
                    set_owner(store, &key, me, None).await;
                    busy = true;
                }
            }
            None if !deleting(rs) && sel.matches(labels) => {
                set_owner(
                    store,
                    &key,
                    me,
                    Some(controller_ref(d, "apps/v1", "Deployment")),
                )
                .await;
                owned.push(rs.clone());
                busy = true;
            }
            _ => {}
        }
    }
    owned.retain(|rs| !deleting(rs));
    owned.sort_by(|a, b| {
        let ta = a["metadata"]["creationTimestamp"].as_str().unwrap_or("");
        let tb = b["metadata"]["creationTimestamp"].as_str().unwrap_or("");
        ta.cmp(tb).then_with(|| name(a).cmp(name(b)))
    });
    let replicas = spec_replicas(d);
    let paused = d["spec"]["paused"] == json!(true);
    let mut new_rs = owned.iter().find(|rs| same_template(rs, d)).cloned();
    let olds: Vec<Value> = owned
        .iter()
        .filter(|rs| new_rs.as_ref().is_none_or(|n| name(n) != name(rs)))
        .cloned()
        .collect();
    let max_old_rev = olds.iter().map(revision).max().unwrap_or(0);
    let mut created = false;
    if paused {
        // Scaling still applies, to the one ReplicaSet that has pods (with several in the
        // middle of a rollout, it waits for the resume).
        let active: Vec<&Value> = owned.iter().filter(|o| spec_replicas(o) > 0).collect();
        let cur = match active.as_slice() {
            [one] => Some(*one),
            [] => new_rs.as_ref().or(owned.last()),
            _ => None,
        };
        if let Some(cur) = cur {
            if spec_replicas(cur) != replicas {
                scale(store, d, cur, replicas, replicas).await;
                busy = true;
            }
        }
    } else if new_rs.is_none() {
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let initial = if olds.is_empty() {
            replicas
        } else if recreate {
            0
        } else {
            let (surge, _) = bounds(d);
            let total: i64 = olds.iter().map(spec_replicas).sum();
            (replicas + surge - total).clamp(0, replicas)
        };
        match make_rs(objects, d, max_old_rev + 1, initial).await {
            Ok(rs) => {
                kv::event(
                    store,
                    d,
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {} from 0 to {initial}", name(&rs)),
                    COMPONENT,
                )
                .await;
                new_rs = Some(rs);
                created = true;
                busy = true;
            }
            Err(e) if e.code == 409 => {
                // `<name>-<hash>` is taken by a ReplicaSet of another template: count a
                // collision, which changes the hash.
                bump_collisions(store, d).await;
                return true;
            }
            Err(e) => {
                kv::event(
                    store,
                    d,
                    "Warning",
                    "FailedCreate",
                    &format!("Failed to create new replica set: {}", e.message),
                    COMPONENT,
                )
                .await;
                return true;
            }
        }
    } else if let Some(n) = &new_rs {
        if revision(n) <= max_old_rev {
            // An old template came back (`rollout undo`): it is the newest revision now.
            set_revision(store, n, max_old_rev + 1).await;
            busy = true;
        }
    }
    if !paused {
        if let Some(n) = &new_rs {
            busy |= if d["spec"]["strategy"]["type"] == "Recreate" {
                recreate(store, d, n, &olds).await
            } else {
                rolling(store, d, n, &olds).await
            };
        }
    }
    let complete = new_rs.as_ref().is_some_and(|n| {
        spec_replicas(n) == replicas
            && st(n, "replicas") == replicas
            && st(n, "availableReplicas") == replicas
    }) && olds
        .iter()
        .all(|o| spec_replicas(o) == 0 && st(o, "replicas") == 0);
    if complete {
        cleanup(store, d, &olds).await;
    }
    let rev = new_rs.as_ref().map(revision).unwrap_or(0);
    write_status(store, d, new_rs.as_ref(), &owned, created, complete, rev).await;
    busy || (!complete && !paused)
}

/// `(maxSurge, maxUnavailable)` as counts for the Deployment's replicas.
fn bounds(d: &Value) -> (i64, i64) {
    let replicas = spec_replicas(d);
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = int_or_percent(&ru["maxSurge"])
        .unwrap_or(IntOrPercent::Percent(25))
        .resolve(replicas, true);
    let mut unavail = int_or_percent(&ru["maxUnavailable"])
        .unwrap_or(IntOrPercent::Percent(25))
        .resolve(replicas, false);
    if surge == 0 && unavail == 0 {
        unavail = 1;
    }
    (surge, unavail.min(replicas))
}

/// One step of a rolling update; true if it changed something.
async fn rolling(store: &Arc<dyn Store>, d: &Value, new_rs: &Value, olds: &[Value]) -> bool {
    let replicas = spec_replicas(d);
    let (surge, unavail) = bounds(d);
    let total: i64 = olds.iter().map(spec_replicas).sum::<i64>() + spec_replicas(new_rs);
    let new_spec = spec_replicas(new_rs);
    // Grow the new ReplicaSet within the surge.
    let target = if new_spec > replicas {
        replicas
    } else {
        let room = (replicas + surge - total).max(0);
        (new_spec + room).min(replicas)
    };
    if target != new_spec {
        scale(store, d, new_rs, target, replicas + surge).await;
        return true;
    }
    // Shrink old ones while enough pods stay available.
    let min_available = replicas - unavail;
    let new_unavailable = (new_spec - st(new_rs, "availableReplicas")).max(0);
    let mut max_down = total - min_available - new_unavailable;
    if max_down <= 0 {
        return false;
    }
    let mut changed = false;
    let mut specs: Vec<i64> = olds.iter().map(spec_replicas).collect();
    // Unhealthy old pods first: they serve nothing.
    for (i, o) in olds.iter().enumerate() {
        if max_down <= 0 {
            break;
        }
        let unhealthy = (specs[i] - st(o, "availableReplicas")).max(0);
        let down = unhealthy.min(max_down);
        if down > 0 {
            specs[i] -= down;
            max_down -= down;
            scale(store, d, o, specs[i], replicas + surge).await;
            changed = true;
        }
    }
    // Then healthy ones, as long as the available pods stay at least `min_available`.
    let available: i64 = olds
        .iter()
        .zip(&specs)
        .map(|(o, s)| st(o, "availableReplicas").min(*s))
        .sum::<i64>()
        + st(new_rs, "availableReplicas");
    let mut can_down = (available - min_available).min(max_down);
    for (i, o) in olds.iter().enumerate() {
        if can_down <= 0 {
            break;
        }
        let down = specs[i].min(can_down);
        if down > 0 {
            specs[i] -= down;
            can_down -= down;
            scale(store, d, o, specs[i], replicas + surge).await;
            changed = true;
        }
    }
    changed
}

/// One step of a Recreate rollout: old ones to zero, then (their pods gone) the new one up.
async fn recreate(store: &Arc<dyn Store>, d: &Value, new_rs: &Value, olds: &[Value]) -> bool {
    let replicas = spec_replicas(d);
    let mut changed = false;
    for o in olds {
        if spec_replicas(o) > 0 {
            scale(store, d, o, 0, replicas).await;
            changed = true;
        }
    }
    if changed || olds.iter().any(|o| st(o, "replicas") > 0) {
        return true;
    }
    if spec_replicas(new_rs) != replicas {
        scale(store, d, new_rs, replicas, replicas).await;
        return true;
    }
    false
}

async fn scale(store: &Arc<dyn Store>, d: &Value, rs: &Value, to: i64, max: i64) {
    let from = spec_replicas(rs);
    let key = registry::key("apps", "replicasets", Some(namespace(rs)), name(rs));
    let want = spec_replicas(d);
    let _ = kv::modify(store, &key, |v| {
        if spec_replicas(v) == to {
            return Change::Keep;
        }
        v["spec"]["replicas"] = json!(to);
        let g = v["metadata"]["generation"].as_i64().unwrap_or(1);
        v["metadata"]["generation"] = json!(g + 1);
        let m = v["metadata"].as_object_mut().expect("metadata");
        let a = m.entry("annotations").or_insert(json!({}));
        a[DESIRED] = json!(want.to_string());
        a[MAX_REPLICAS] = json!(max.to_string());
        Change::Write
    })
    .await;
    if from != to {
        let verb = if to > from { "up" } else { "down" };
        kv::event(
            store,
            d,
            "Normal",
            "ScalingReplicaSet",
            &format!("Scaled {verb} replica set {} from {from} to {to}", name(rs)),
            COMPONENT,
        )
        .await;
    }
}

async fn set_revision(store: &Arc<dyn Store>, rs: &Value, rev: i64) {
    let key = registry::key("apps", "replicasets", Some(namespace(rs)), name(rs));
    let _ = kv::modify(store, &key, |v| {
        let m = v["metadata"].as_object_mut().expect("metadata");
        let a = m.entry("annotations").or_insert(json!({}));
        a[REVISION] = json!(rev.to_string());
        Change::Write
    })
    .await;
}

async fn bump_collisions(store: &Arc<dyn Store>, d: &Value) {
    let key = registry::key("apps", "deployments", Some(namespace(d)), name(d));
    let _ = kv::modify(store, &key, |v| {
        let n = v["status"]["collisionCount"].as_i64().unwrap_or(0);
        if !v["status"].is_object() {
            v["status"] = json!({});
        }
        v["status"]["collisionCount"] = json!(n + 1);
        Change::Write
    })
    .await;
}

async fn make_rs(
    objects: &Objects,
    d: &Value,
    rev: i64,
    replicas: i64,
) -> Result<Value, corral_api::status::ApiError> {
    let collisions = d["status"]["collisionCount"].as_i64().unwrap_or(0);
    let hash = template_hash(&d["spec"]["template"], collisions);
    let mut template = d["spec"]["template"].clone();
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = serde_json::Map::new();
    if let Some(a) = d["metadata"]["annotations"].as_object() {
        for (k, v) in a {
            if !NOT_COPIED.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    let (surge, _) = bounds(d);
    annotations.insert(REVISION.into(), json!(rev.to_string()));
    annotations.insert(DESIRED.into(), json!(spec_replicas(d).to_string()));
    annotations.insert(
        MAX_REPLICAS.into(),
        json!((spec_replicas(d) + surge).to_string()),
    );
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", name(d)),
            "namespace": namespace(d),
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [controller_ref(d, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    });
    kv::create_as_controller(objects, namespace(d), &rs).await
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
async fn cleanup(store: &Arc<dyn Store>, d: &Value, olds: &[Value]) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Value> = olds
        .iter()
        .filter(|o| spec_replicas(o) == 0 && st(o, "replicas") == 0)
        .collect();
    if empty.len() <= limit {
        return;
    }
    empty.sort_by_key(|o| revision(o));
    let extra = empty.len() - limit;
    for o in empty.into_iter().take(extra) {
        let key = registry::key("apps", "replicasets", Some(namespace(o)), name(o));
        let _ = kv::delete_like_api(store, &key).await;
    }
}

fn condition(ty: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

/// Puts `c` in `list`: the transition time is kept while the status stays, the update time
/// while the reason and message stay too.
fn set_condition(list: &mut Vec<Value>, mut c: Value, progressed: bool) {
    if let Some(old) = list.iter_mut().find(|o| o["type"] == c["type"]) {
        if old["status"] == c["status"] {
            c["lastTransitionTime"] = old["lastTransitionTime"].clone();
            if old["reason"] == c["reason"] && old["message"] == c["message"] && !progressed {
                c["lastUpdateTime"] = old["lastUpdateTime"].clone();
            }
        }
        *old = c;
    } else {
        list.push(c);
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_status(
    store: &Arc<dyn Store>,
    d: &Value,
    new_rs: Option<&Value>,
    owned: &[Value],
    created: bool,
    complete: bool,
    rev: i64,
) {
    let replicas = spec_replicas(d);
    let (_, unavail) = bounds(d);
    let sum = |f: &str| owned.iter().map(|o| st(o, f)).sum::<i64>();
    let total_spec: i64 = owned.iter().map(spec_replicas).sum();
    let updated = new_rs.map(|n| st(n, "replicas")).unwrap_or(0);
    let available = sum("availableReplicas");
    let counts = json!({
        "replicas": sum("replicas"),
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total_spec.max(replicas) - available).max(0),
    });
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64();
    let paused = d["spec"]["paused"] == json!(true);
    let new_name = new_rs.map(name).unwrap_or("").to_string();
    let key = registry::key("apps", "deployments", Some(namespace(d)), name(d));
    let _ = kv::modify(store, &key, |v| {
        let now = kv::now();
        let mut s = v["status"].clone();
        if !s.is_object() {
            s = json!({});
        }
        let progressed = ["updatedReplicas", "readyReplicas", "availableReplicas"]
            .iter()
            .any(|f| counts[*f].as_i64() > s[*f].as_i64())
            || counts["replicas"].as_i64() < s["replicas"].as_i64()
            || created;
        for (k, val) in counts.as_object().expect("counts") {
            s[k] = val.clone();
        }
        s["observedGeneration"] = v["metadata"]["generation"].clone();
        let mut conds: Vec<Value> = s["conditions"].as_array().cloned().unwrap_or_default();
        let avail = if available >= replicas - unavail {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now,
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now,
            )
        };
        set_condition(&mut conds, avail, false);
        let previous = conds.iter().find(|c| c["type"] == "Progressing").cloned();
        let progressing = if paused {
            Some(condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &now,
            ))
        } else if created {
            Some(condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{new_name}\""),
                &now,
            ))
        } else if complete {
            Some(condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                &now,
            ))
        } else if progressed
            || previous.as_ref().is_none_or(|p| {
                p["reason"] == "DeploymentResumed"
                    || p["reason"] == "DeploymentPaused"
                    || p["reason"] == "NewReplicaSetAvailable"
            })
        {
            Some(condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                &now,
            ))
        } else {
            // No progress: past the deadline since the last, the rollout has stalled.
            let last = previous
                .as_ref()
                .and_then(|p| p["lastUpdateTime"].as_str())
                .and_then(corral_api::objects::parse_rfc3339);
            let now_s = corral_api::objects::parse_rfc3339(&now).unwrap_or(0);
            match (deadline, last) {
                (Some(dl), Some(t))
                    if now_s - t > dl
                        && previous
                            .as_ref()
                            .is_some_and(|p| p["reason"] != "ProgressDeadlineExceeded") =>
                {
                    Some(condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        &now,
                    ))
                }
                _ => None,
            }
        };
        if let Some(p) = progressing {
            set_condition(&mut conds, p, progressed);
        }
        s["conditions"] = json!(conds);
        let mut changed = s != v["status"];
        if changed {
            v["status"] = s;
        }
        if rev > 0 {
            let m = v["metadata"].as_object_mut().expect("metadata");
            let a = m.entry("annotations").or_insert(json!({}));
            if a[REVISION] != json!(rev.to_string()) {
                a[REVISION] = json!(rev.to_string());
                changed = true;
            }
        }
        if changed {
            Change::Write
        } else {
            Change::Keep
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_safe() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        let a = template_hash(&t, 0);
        assert_eq!(a, template_hash(&t, 0));
        assert_ne!(a, template_hash(&t, 1));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn the_hash_label_does_not_make_a_template_new() {
        let d = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        let rs = json!({"spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        assert!(same_template(&rs, &d));
        let other = json!({"spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}, "spec": {"containers": [{"name": "c", "image": "b"}]}}}});
        assert!(!same_template(&other, &d));
    }

    #[test]
    fn surge_and_unavailability_bounds() {
        let d = json!({"spec": {"replicas": 10, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        assert_eq!(bounds(&d), (3, 2));
        let d = json!({"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        assert_eq!(bounds(&d), (1, 0));
        let d = json!({"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(bounds(&d), (0, 1));
    }
}
