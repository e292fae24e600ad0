//! The ReplicaSet controller: each ReplicaSet has `spec.replicas` live pods made from its
//! template, as Kubernetes' replicaset controller keeps them.
//!
//! - Pods it made carry a controller ownerReference to it; a pod the selector matches that
//!   has no controller is adopted, an owned pod whose labels stop matching is released.
//! - Missing pods are made (`<name>-<5 random>`, through the API's own create path, so they
//!   are defaulted and checked as a user's pod is); extra ones are deleted gracefully, the
//!   least useful first: unscheduled, then pending, then not ready, then the newest.
//! - Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
//!   `minReadySeconds`), observedGeneration.
//!
//! Every pass reads the pods from the store, so a pod made by the previous pass is always
//! seen: no expectations cache is needed, as it is in Kubernetes where the controller reads
//! an informer that may lag.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::objects::Objects;
use corral_api::selector::LabelSelector;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, now_secs, Change};

const COMPONENT: &str = "replicaset-controller";
/// At most this many pods made or deleted per ReplicaSet per pass.
const BURST: usize = 100;

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("apps", "replicasets", None),
        registry::prefix("", "pods", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(&store, &prefixes, "replicaset controller", shutdown, || {
        sync(&store, &objects)
    })
    .await;
}

/// One pass over every ReplicaSet; true while one waits on time (`minReadySeconds`) or made
/// a change.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((sets, _)) = kv::list(store, &registry::prefix("apps", "replicasets", None)).await
    else {
        return true;
    };
    if sets.is_empty() {
        return false;
    }
    let Ok((pods, _)) = kv::list(store, &registry::prefix("", "pods", None)).await else {
        return true;
    };
    let mut by_ns: HashMap<String, Vec<Value>> = HashMap::new();
    for p in pods {
        by_ns.entry(namespace(&p).to_string()).or_default().push(p);
    }
    let mut busy = false;
    for rs in &sets {
        if deleting(rs) {
            continue;
        }
        let pods = by_ns.get(namespace(rs)).map(Vec::as_slice).unwrap_or(&[]);
        busy |= sync_one(store, objects, rs, pods).await;
    }
    busy
}

pub(crate) use crate::kv::{deleting, name, namespace, uid_of as uid};

/// The uid of `v`'s controller (the ownerReference with `controller: true`).
pub(crate) fn controller_uid(v: &Value) -> Option<&str> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == json!(true))
        .and_then(|o| o["uid"].as_str())
}

/// The ownerReference that makes `owner` (of `api_version`/`kind`) the controller.
pub(crate) fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": name(owner), "uid": uid(owner),
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn finished(p: &Value) -> bool {
    matches!(
        p["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// The time a pod became Ready, if it is.
fn ready_since(p: &Value) -> Option<i64> {
    let c = p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    if c["status"] != "True" {
        return None;
    }
    Some(
        c["lastTransitionTime"]
            .as_str()
            .and_then(corral_api::objects::parse_rfc3339)
            .unwrap_or(0),
    )
}

/// Whether a pod counts as available: Ready for at least `min_ready` seconds.
pub(crate) fn available(p: &Value, min_ready: i64, now: i64) -> bool {
    ready_since(p).is_some_and(|t| min_ready <= 0 || now - t >= min_ready)
}

/// Adds (`Some`) or removes (`None`) the controller reference of `owner_uid` on `key`.
pub(crate) async fn set_owner(
    store: &Arc<dyn Store>,
    key: &str,
    owner_uid: &str,
    owner: Option<Value>,
) {
    let _ = kv::modify(store, key, |v| {
        let m = v["metadata"].as_object_mut().expect("metadata");
        let refs = m.entry("ownerReferences").or_insert(json!([]));
        let Some(list) = refs.as_array_mut() else {
            return Change::Keep;
        };
        match &owner {
            Some(o) => {
                if list.iter().any(|r| r["controller"] == json!(true)) {
                    return Change::Keep;
                }
                list.push(o.clone());
            }
            None => {
                let before = list.len();
                list.retain(|r| r["uid"] != owner_uid);
                if list.len() == before {
                    return Change::Keep;
                }
            }
        }
        if list.is_empty() {
            m.remove("ownerReferences");
        }
        Change::Write
    })
    .await;
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, rs: &Value, pods: &[Value]) -> bool {
    let ns = namespace(rs);
    let me = uid(rs);
    let Ok(sel) = LabelSelector::from_k8s(&rs["spec"]["selector"]) else {
        return false;
    };
    let mut busy = false;
    let mut owned: Vec<&Value> = Vec::new();
    for p in pods {
        let key = registry::key("", "pods", Some(ns), name(p));
        let matches = sel.matches(p.get("metadata").and_then(|m| m.get("labels")));
        match controller_uid(p) {
            Some(u) if u == me => {
                if matches {
                    owned.push(p);
                } else if !deleting(p) {
                    set_owner(store, &key, me, None).await;
                    busy = true;
                }
            }
            None if matches && !deleting(p) && !finished(p) => {
                set_owner(
                    store,
                    &key,
                    me,
                    Some(controller_ref(rs, "apps/v1", "ReplicaSet")),
                )
                .await;
                owned.push(p);
                busy = true;
            }
            _ => {}
        }
    }
    let mut active: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|p| !deleting(p) && !finished(p))
        .collect();
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if active.len() < want {
        let n = (want - active.len()).min(BURST);
        let mut made = 0;
        for _ in 0..n {
            match make_pod(objects, rs).await {
                Ok(p) => {
                    made += 1;
                    kv::event(
                        store,
                        rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name(&p)),
                        COMPONENT,
                    )
                    .await;
                }
                Err(e) => {
                    kv::event(
                        store,
                        rs,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                        COMPONENT,
                    )
                    .await;
                    set_failure(store, rs, &e.message).await;
                    break;
                }
            }
        }
        busy |= made > 0;
    } else if active.len() > want {
        active.sort_by_key(|p| deletion_rank(p));
        let extra = (active.len() - want).min(BURST);
        for p in active.into_iter().take(extra) {
            let key = registry::key("", "pods", Some(ns), name(p));
            if kv::delete_like_api(store, &key).await.is_ok() {
                kv::event(
                    store,
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", name(p)),
                    COMPONENT,
                )
                .await;
            }
        }
        busy = true;
    }
    busy | write_status(store, rs, &owned).await
}

/// How useful a pod is to keep (smaller goes first): unscheduled, pending, not ready,
/// ready for less time, more restarts, newer.
fn deletion_rank(p: &Value) -> (u8, u8, u8, i64, i64, std::cmp::Reverse<String>) {
    let scheduled = u8::from(!p["spec"]["nodeName"].is_null());
    let phase = match p["status"]["phase"].as_str() {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready = ready_since(p);
    let restarts: i64 = p["status"]["containerStatuses"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        u8::from(ready.is_some()),
        // Ready longer is worth more: a later time sorts first.
        -ready.unwrap_or(0),
        -restarts,
        std::cmp::Reverse(
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
    )
}

async fn make_pod(objects: &Objects, rs: &Value) -> Result<Value, corral_api::status::ApiError> {
    let t = &rs["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", name(rs)),
        "namespace": namespace(rs),
        "ownerReferences": [controller_ref(rs, "apps/v1", "ReplicaSet")],
    });
    for f in ["labels", "annotations"] {
        if t["metadata"][f].is_object() {
            meta[f] = t["metadata"][f].clone();
        }
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]});
    kv::create_as_controller(objects, namespace(rs), &pod).await
}

async fn set_failure(store: &Arc<dyn Store>, rs: &Value, message: &str) {
    let key = registry::key("apps", "replicasets", Some(namespace(rs)), name(rs));
    let _ = kv::modify(store, &key, |v| {
        let cond = json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": message, "lastTransitionTime": kv::now()});
        let st = v
            .as_object_mut()
            .expect("object")
            .entry("status")
            .or_insert(json!({}));
        let list = st
            .as_object_mut()
            .expect("status")
            .entry("conditions")
            .or_insert(json!([]));
        let Some(list) = list.as_array_mut() else {
            return Change::Keep;
        };
        if list
            .iter()
            .any(|c| c["type"] == "ReplicaFailure" && c["message"] == message)
        {
            return Change::Keep;
        }
        list.retain(|c| c["type"] != "ReplicaFailure");
        list.push(cond);
        Change::Write
    })
    .await;
}

/// Writes the counts; true while a ready pod waits out `minReadySeconds`.
async fn write_status(store: &Arc<dyn Store>, rs: &Value, owned: &[&Value]) -> bool {
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let now = now_secs();
    let live: Vec<&&Value> = owned
        .iter()
        .filter(|p| !deleting(p) && !finished(p))
        .collect();
    let ready = live.iter().filter(|p| ready_since(p).is_some()).count();
    let avail = live.iter().filter(|p| available(p, min_ready, now)).count();
    let labels = &rs["spec"]["template"]["metadata"]["labels"];
    let fully = live
        .iter()
        .filter(|p| {
            labels
                .as_object()
                .is_none_or(|m| m.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
        })
        .count();
    let key = registry::key("apps", "replicasets", Some(namespace(rs)), name(rs));
    let _ = kv::modify(store, &key, |v| {
        let want = v["spec"]["replicas"].as_i64().unwrap_or(1);
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        st["replicas"] = json!(live.len());
        st["fullyLabeledReplicas"] = json!(fully);
        st["readyReplicas"] = json!(ready);
        st["availableReplicas"] = json!(avail);
        st["observedGeneration"] = v["metadata"]["generation"].clone();
        // A failure to create is cleared once the pods are there.
        if live.len() as i64 >= want {
            if let Some(cs) = st["conditions"].as_array_mut() {
                cs.retain(|c| c["type"] != "ReplicaFailure");
            }
        }
        if st["conditions"].as_array().is_some_and(Vec::is_empty) {
            st.as_object_mut().expect("status").remove("conditions");
        }
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        Change::Write
    })
    .await;
    min_ready > 0 && ready > avail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: bool, phase: &str, ready: Option<&str>, created: &str) -> Value {
        let mut p = json!({"metadata": {"creationTimestamp": created}, "status": {"phase": phase}});
        if node {
            p["spec"] = json!({"nodeName": "n1"});
        }
        if let Some(t) = ready {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
        }
        p
    }

    #[test]
    fn the_least_useful_pods_go_first() {
        let unscheduled = pod(false, "Pending", None, "2026-01-01T00:00:00Z");
        let pending = pod(true, "Pending", None, "2026-01-01T00:00:00Z");
        let not_ready = pod(true, "Running", None, "2026-01-01T00:00:00Z");
        let ready_new = pod(
            true,
            "Running",
            Some("2026-01-02T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let ready_old = pod(
            true,
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let mut all = [&ready_old, &ready_new, &not_ready, &pending, &unscheduled];
        all.sort_by_key(|p| deletion_rank(p));
        assert!(std::ptr::eq(all[0], &unscheduled));
        assert!(std::ptr::eq(all[1], &pending));
        assert!(std::ptr::eq(all[2], &not_ready));
        assert!(std::ptr::eq(all[3], &ready_new));
        assert!(std::ptr::eq(all[4], &ready_old));
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod(
            true,
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00Z",
        );
        let t = corral_api::objects::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert!(available(&p, 0, t));
        assert!(!available(&p, 10, t + 5));
        assert!(available(&p, 10, t + 10));
    }
}
