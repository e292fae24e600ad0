//! The StatefulSet controller: pods with stable names and their own volumes, as Kubernetes'
//! statefulset controller keeps them.
//!
//! - Pod `i` is `<name>-<i>`, hostname `<name>-<i>` in subdomain `serviceName`, labelled
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//!   `controller-revision-hash: <name>-<hash of the template>`, with a controller
//!   ownerReference to the set.
//! - Each `volumeClaimTemplates` entry gives pod `i` the claim `<template>-<name>-<i>`, made
//!   before the pod and kept after it (a replacement pod mounts the same data); with
//!   `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete` the claims are owned by the
//!   set and go with it; with `whenScaled: Delete` the claims of ordinals at or above
//!   `replicas` whose pod is gone are deleted.
//! - `OrderedReady`: pods are made in order, each once the one before is Running and Ready,
//!   and removed in reverse order, one at a time. `Parallel`: all at once.
//! - A failed pod is deleted and made again under the same name.
//! - `RollingUpdate`: pods at or above `partition` whose revision is not the template's are
//!   deleted one at a time, highest ordinal first, while every other pod is Ready; they come
//!   back with the new template. `OnDelete`: only a pod deleted by the user is replaced.
//! - Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
//!   currentRevision, updateRevision, observedGeneration (what `kubectl rollout status
//!   statefulset` reads). Each template is a ControllerRevision ([`crate::revisions`]), so
//!   `kubectl rollout history|undo statefulset` work.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::objects::Objects;
use corral_api::selector::LabelSelector;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, deleting, name, namespace, now_secs, uid_of as uid, Change};
use crate::replicasets::{available, controller_ref, controller_uid};

const COMPONENT: &str = "statefulset-controller";
/// The label with a pod's revision.
pub const REVISION: &str = "controller-revision-hash";

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("apps", "statefulsets", None),
        registry::prefix("", "pods", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(
        &store,
        &prefixes,
        "statefulset controller",
        shutdown,
        || sync(&store, &objects),
    )
    .await;
}

/// One pass over every StatefulSet; true while one made a change or waits on time.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((sets, _)) = kv::list(store, &registry::prefix("apps", "statefulsets", None)).await
    else {
        return true;
    };
    if sets.is_empty() {
        return false;
    }
    let Ok((pods, _)) = kv::list(store, &registry::prefix("", "pods", None)).await else {
        return true;
    };
    let mut by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    for p in pods {
        if let Some(u) = controller_uid(&p) {
            by_owner.entry(u.to_string()).or_default().push(p);
        }
    }
    let mut busy = false;
    for set in sets.iter().filter(|s| !deleting(s)) {
        let owned = by_owner.get(uid(set)).map(Vec::as_slice).unwrap_or(&[]);
        busy |= sync_one(store, objects, set, owned).await;
    }
    busy
}

/// The revision name of a set's current template.
pub fn revision(set: &Value) -> String {
    format!(
        "{}-{}",
        name(set),
        crate::deployments::template_hash(&set["spec"]["template"], 0)
    )
}

fn ordinal(set: &Value, p: &Value) -> Option<i64> {
    name(p)
        .strip_prefix(name(set))?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && kv::is_ready(p)
}

fn claim_name(template: &Value, set: &Value, i: i64) -> String {
    format!(
        "{}-{}-{i}",
        template["metadata"]["name"].as_str().unwrap_or(""),
        name(set)
    )
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, set: &Value, pods: &[Value]) -> bool {
    let ns = namespace(set);
    let spec = &set["spec"];
    let want = spec["replicas"].as_i64().unwrap_or(1).max(0);
    let update_rev = revision(set);
    let parallel = spec["podManagementPolicy"] == "Parallel";
    let Ok(sel) = LabelSelector::from_k8s(&spec["selector"]) else {
        return false;
    };
    let mut by_ordinal: HashMap<i64, &Value> = HashMap::new();
    for p in pods {
        if let Some(i) = ordinal(set, p) {
            if sel.matches(p.get("metadata").and_then(|m| m.get("labels"))) {
                by_ordinal.insert(i, p);
            }
        }
    }
    if set["status"]["observedGeneration"] != set["metadata"]["generation"] {
        let live: Vec<&str> = by_ordinal
            .values()
            .filter_map(|p| p["metadata"]["labels"][REVISION].as_str())
            .collect();
        let made =
            crate::revisions::record(store, objects, set, "StatefulSet", &update_rev, &live).await;
        if let Err(e) = made {
            tracing::warn!(set = name(set), "statefulset history: {e}");
            return true;
        }
    }
    let mut busy = false;
    // A failed pod goes, to come back under its name.
    for p in by_ordinal.values() {
        if p["status"]["phase"] == "Failed" && !deleting(p) {
            let key = registry::key("", "pods", Some(ns), name(p));
            let _ = kv::delete_like_api(store, &key).await;
            busy = true;
        }
    }
    // Missing pods, in order (OrderedReady waits for each to be Ready).
    for i in 0..want {
        match by_ordinal.get(&i) {
            Some(p) if ready(p) && !deleting(p) => continue,
            Some(_) if parallel => continue,
            Some(_) => break,
            None => {
                if let Err(e) = make_claims(objects, set, i).await {
                    event(
                        store,
                        set,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Claim for Pod {}-{i} in StatefulSet {} failed: {}",
                            name(set),
                            name(set),
                            e.message
                        ),
                    )
                    .await;
                    busy = true;
                    break;
                }
                match make_pod(objects, set, i, &update_rev).await {
                    Ok(p) => {
                        event(
                            store,
                            set,
                            "Normal",
                            "SuccessfulCreate",
                            &format!(
                                "create Pod {} in StatefulSet {} successful",
                                name(&p),
                                name(set)
                            ),
                        )
                        .await;
                    }
                    Err(e) if e.code == 409 => {}
                    Err(e) => {
                        event(
                            store,
                            set,
                            "Warning",
                            "FailedCreate",
                            &format!(
                                "create Pod {}-{i} in StatefulSet {} failed: {}",
                                name(set),
                                name(set),
                                e.message
                            ),
                        )
                        .await;
                    }
                }
                busy = true;
                if !parallel {
                    break;
                }
            }
        }
    }
    // Extra pods, highest ordinal first.
    let mut extra: Vec<(i64, &Value)> = by_ordinal
        .iter()
        .filter(|(i, _)| **i >= want)
        .map(|(i, p)| (*i, *p))
        .collect();
    extra.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    let all_ready_below =
        |limit: i64| (0..limit).all(|i| by_ordinal.get(&i).is_some_and(|p| ready(p)));
    for (i, p) in &extra {
        if deleting(p) {
            busy = true;
            if !parallel {
                break;
            }
            continue;
        }
        if !parallel && !all_ready_below(want.min(*i)) {
            break;
        }
        let key = registry::key("", "pods", Some(ns), name(p));
        if kv::delete_like_api(store, &key).await.is_ok() {
            event(
                store,
                set,
                "Normal",
                "SuccessfulDelete",
                &format!(
                    "delete Pod {} in StatefulSet {} successful",
                    name(p),
                    name(set)
                ),
            )
            .await;
        }
        busy = true;
        if !parallel {
            break;
        }
    }
    if spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete" {
        busy |= delete_scaled_claims(store, set, want, &by_ordinal).await;
    }
    // Rolling update: one old pod at a time, highest first, while all the others are Ready.
    let st = &spec["updateStrategy"];
    if st["type"] != "OnDelete" && extra.is_empty() {
        let partition = st["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
        let settled =
            (0..want).all(|i| by_ordinal.get(&i).is_some_and(|p| ready(p) && !deleting(p)));
        if settled {
            let old = (partition..want).rev().find(|i| {
                by_ordinal.get(i).is_some_and(|p| {
                    p["metadata"]["labels"][REVISION].as_str() != Some(update_rev.as_str())
                })
            });
            if let Some(i) = old {
                let p = by_ordinal[&i];
                let key = registry::key("", "pods", Some(ns), name(p));
                if kv::delete_like_api(store, &key).await.is_ok() {
                    event(
                        store,
                        set,
                        "Normal",
                        "SuccessfulDelete",
                        &format!(
                            "delete Pod {} in StatefulSet {} successful",
                            name(p),
                            name(set)
                        ),
                    )
                    .await;
                }
                busy = true;
            }
        }
    }
    busy | write_status(store, set, &by_ordinal, &update_rev).await
}

async fn event(store: &Arc<dyn Store>, set: &Value, ty: &str, reason: &str, message: &str) {
    kv::event(store, set, ty, reason, message, COMPONENT).await;
}

/// `whenScaled: Delete`: deletes the claims of ordinals at or above `want` whose pod is gone
/// (scaled down, now or before the policy was set). True when it deleted one.
async fn delete_scaled_claims(
    store: &Arc<dyn Store>,
    set: &Value,
    want: i64,
    by_ordinal: &HashMap<i64, &Value>,
) -> bool {
    let ns = namespace(set);
    let prefix = registry::prefix("", "persistentvolumeclaims", Some(ns));
    let Ok((claims, _)) = kv::list(store, &prefix).await else {
        return true;
    };
    let mut deleted = false;
    for t in set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let stem = format!(
            "{}-{}-",
            t["metadata"]["name"].as_str().unwrap_or(""),
            name(set)
        );
        for c in &claims {
            let Some(i) = name(c)
                .strip_prefix(&stem)
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            if i < want || by_ordinal.contains_key(&i) || deleting(c) {
                continue;
            }
            let key = registry::key("", "persistentvolumeclaims", Some(ns), name(c));
            if kv::delete_like_api(store, &key).await.is_ok() {
                let msg = format!(
                    "delete Claim {} in StatefulSet {} successful",
                    name(c),
                    name(set)
                );
                event(store, set, "Normal", "SuccessfulDelete", &msg).await;
                deleted = true;
            }
        }
    }
    deleted
}

/// Makes pod `i`'s claims that do not exist yet.
async fn make_claims(
    objects: &Objects,
    set: &Value,
    i: i64,
) -> Result<(), corral_api::status::ApiError> {
    let r =
        corral_api::resources::find("", "v1", "persistentvolumeclaims").expect("claims are served");
    let ns = namespace(set);
    let owned = set["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete";
    for t in set["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let claim = claim_name(t, set, i);
        if objects.get(r, Some(ns), &claim).await.is_ok() {
            continue;
        }
        let mut labels = set["spec"]["selector"]["matchLabels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        if let Some(l) = t["metadata"]["labels"].as_object() {
            for (k, v) in l {
                labels[k] = v.clone();
            }
        }
        let mut meta = json!({"name": claim, "namespace": ns, "labels": labels});
        if t["metadata"]["annotations"].is_object() {
            meta["annotations"] = t["metadata"]["annotations"].clone();
        }
        if owned {
            meta["ownerReferences"] = json!([controller_ref(set, "apps/v1", "StatefulSet")]);
        }
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": t["spec"]});
        match kv::create_as_controller(objects, ns, &pvc).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn make_pod(
    objects: &Objects,
    set: &Value,
    i: i64,
    rev: &str,
) -> Result<Value, corral_api::status::ApiError> {
    let t = &set["spec"]["template"];
    let pod_name = format!("{}-{i}", name(set));
    let mut labels = t["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION] = json!(rev);
    labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    labels["apps.kubernetes.io/pod-index"] = json!(i.to_string());
    let mut meta = json!({
        "name": pod_name,
        "namespace": namespace(set),
        "labels": labels,
        "ownerReferences": [controller_ref(set, "apps/v1", "StatefulSet")],
    });
    if t["metadata"]["annotations"].is_object() {
        meta["annotations"] = t["metadata"]["annotations"].clone();
    }
    let mut spec = t["spec"].clone();
    spec["hostname"] = json!(pod_name);
    if let Some(svc) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(svc);
    }
    // Each claim template is a volume of that name, bound to this pod's own claim.
    let templates = set["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !templates.is_empty() {
        let mut volumes: Vec<Value> = spec["volumes"].as_array().cloned().unwrap_or_default();
        for ct in &templates {
            let vname = ct["metadata"]["name"].as_str().unwrap_or("");
            volumes.retain(|v| v["name"] != vname);
            volumes.push(json!({"name": vname,
                "persistentVolumeClaim": {"claimName": claim_name(ct, set, i)}}));
        }
        spec["volumes"] = json!(volumes);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    kv::create_as_controller(objects, namespace(set), &pod).await
}

/// Writes the counts; true while a ready pod waits out `minReadySeconds`.
async fn write_status(
    store: &Arc<dyn Store>,
    set: &Value,
    pods: &HashMap<i64, &Value>,
    update_rev: &str,
) -> bool {
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let now = now_secs();
    let live: Vec<&&Value> = pods.values().filter(|p| !deleting(p)).collect();
    let ready_n = live.iter().filter(|p| ready(p)).count();
    let avail = live.iter().filter(|p| available(p, min_ready, now)).count();
    let updated = live
        .iter()
        .filter(|p| p["metadata"]["labels"][REVISION].as_str() == Some(update_rev))
        .count();
    let key = registry::key("apps", "statefulsets", Some(namespace(set)), name(set));
    let _ = kv::modify(store, &key, |v| {
        let want = v["spec"]["replicas"].as_i64().unwrap_or(1) as usize;
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        let current_rev = st["currentRevision"]
            .as_str()
            .unwrap_or(update_rev)
            .to_string();
        // The update is done once every pod runs the new revision and is Ready.
        let done = updated == want && ready_n == want && live.len() == want;
        let current_rev = if done {
            update_rev.to_string()
        } else {
            current_rev
        };
        let current = live
            .iter()
            .filter(|p| p["metadata"]["labels"][REVISION].as_str() == Some(current_rev.as_str()))
            .count();
        st["replicas"] = json!(live.len());
        st["readyReplicas"] = json!(ready_n);
        st["availableReplicas"] = json!(avail);
        st["currentReplicas"] = json!(current);
        st["updatedReplicas"] = json!(updated);
        st["currentRevision"] = json!(current_rev);
        st["updateRevision"] = json!(update_rev);
        st["collisionCount"] = json!(0);
        st["observedGeneration"] = v["metadata"]["generation"].clone();
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        Change::Write
    })
    .await;
    min_ready > 0 && ready_n > avail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_pod_name() {
        let set = json!({"metadata": {"name": "web"}});
        let p = |n: &str| json!({"metadata": {"name": n}});
        assert_eq!(ordinal(&set, &p("web-0")), Some(0));
        assert_eq!(ordinal(&set, &p("web-12")), Some(12));
        assert_eq!(ordinal(&set, &p("web-x")), None);
        assert_eq!(ordinal(&set, &p("webby-1")), None);
        let t = json!({"metadata": {"name": "data"}});
        assert_eq!(claim_name(&t, &set, 2), "data-web-2");
    }
}
