//! The disruption controller: each PodDisruptionBudget's status says how many of its pods may
//! be evicted now, as Kubernetes' disruption controller keeps it; the eviction subresource
//! (corral-api's `disruption`) reads it.
//!
//! - The budget's pods are those its selector matches in its namespace (a null selector
//!   matches none, an empty one all), not finished and not being deleted.
//! - `expectedPods`: with an integer `minAvailable`, the pods there are; otherwise the scale
//!   of their controllers (a ReplicaSet's Deployment, a ReplicaSet, a StatefulSet), each
//!   counted once, and one for a pod without a controller.
//! - `desiredHealthy`: `minAvailable` (a percentage of the expected pods, rounded up), or the
//!   expected pods less `maxUnavailable` (a percentage rounded up).
//! - `disruptionsAllowed`: Ready pods less the desired ones less the pods an eviction took in
//!   the last two minutes that are not gone yet (`disruptedPods`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use corral_api::selector::LabelSelector;
use corral_api::workloads::{int_or_percent, IntOrPercent};
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, deleting, is_ready as ready, name, namespace, now_secs, Change};

/// How long an eviction's pod counts as disrupted while it is still there.
const DISRUPTED_FOR: i64 = 120;

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("policy", "poddisruptionbudgets", None),
        registry::prefix("", "pods", None),
    ];
    kv::watch_loop(&store, &prefixes, "disruption controller", shutdown, || {
        sync(&store)
    })
    .await;
}

/// One pass; true while a disrupted pod's entry waits to expire.
pub async fn sync(store: &Arc<dyn Store>) -> bool {
    let prefix = registry::prefix("policy", "poddisruptionbudgets", None);
    let Ok((budgets, _)) = kv::list(store, &prefix).await else {
        return true;
    };
    if budgets.is_empty() {
        return false;
    }
    let mut busy = false;
    let mut cache: HashMap<String, Vec<Value>> = HashMap::new();
    for b in budgets.iter().filter(|b| !deleting(b)) {
        let ns = namespace(b).to_string();
        if !cache.contains_key(&ns) {
            let Ok((pods, _)) = kv::list(store, &registry::prefix("", "pods", Some(&ns))).await
            else {
                return true;
            };
            cache.insert(ns.clone(), pods);
        }
        busy |= sync_one(store, b, &cache[&ns]).await;
    }
    busy
}

/// The replicas of the controller that owns `pod` at the top (a ReplicaSet's Deployment), with
/// a key naming it; `None` for a pod without a controller.
async fn controller_scale(store: &Arc<dyn Store>, pod: &Value) -> Option<(String, i64)> {
    let owner = pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == json!(true))?;
    let ns = namespace(pod);
    let (kind, oname) = (owner["kind"].as_str()?, owner["name"].as_str()?);
    let plural = match kind {
        "ReplicaSet" => "replicasets",
        "StatefulSet" => "statefulsets",
        "Deployment" => "deployments",
        _ => return Some((format!("{kind}/{oname}"), 1)),
    };
    let kvv = store
        .get(&registry::key("apps", plural, Some(ns), oname))
        .await
        .ok()??;
    let obj = registry::decode(&kvv)?;
    if kind == "ReplicaSet" {
        let dep = obj["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|l| l.iter().find(|o| o["kind"] == "Deployment").cloned());
        if let Some(d) = dep {
            let dname = d["name"].as_str().unwrap_or("");
            if let Ok(Some(dk)) = store
                .get(&registry::key("apps", "deployments", Some(ns), dname))
                .await
            {
                if let Some(dv) = registry::decode(&dk) {
                    return Some((
                        format!("Deployment/{dname}"),
                        dv["spec"]["replicas"].as_i64().unwrap_or(1),
                    ));
                }
            }
        }
    }
    Some((
        format!("{kind}/{oname}"),
        obj["spec"]["replicas"].as_i64().unwrap_or(1),
    ))
}

fn scaled(v: IntOrPercent, total: i64) -> i64 {
    v.resolve(total, true)
}

async fn sync_one(store: &Arc<dyn Store>, b: &Value, pods: &[Value]) -> bool {
    let spec = &b["spec"];
    let sel = if spec["selector"].is_null() {
        None
    } else {
        LabelSelector::from_k8s(&spec["selector"]).ok()
    };
    let mine: Vec<&Value> = pods
        .iter()
        .filter(|p| !deleting(p))
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter(|p| {
            sel.as_ref()
                .is_some_and(|s| s.matches(p.get("metadata").and_then(|m| m.get("labels"))))
        })
        .collect();
    let min = int_or_percent(&spec["minAvailable"]);
    let max = int_or_percent(&spec["maxUnavailable"]);
    let expected = if matches!(min, Some(IntOrPercent::Int(_))) {
        mine.len() as i64
    } else {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut total = 0;
        for p in &mine {
            match controller_scale(store, p).await {
                Some((key, n)) => {
                    if seen.insert(key) {
                        total += n;
                    }
                }
                None => total += 1,
            }
        }
        total
    };
    let desired = match (min, max) {
        (Some(m), _) => scaled(m, expected),
        (None, Some(m)) => (expected - scaled(m, expected)).max(0),
        (None, None) => 0,
    };
    let healthy = mine.iter().filter(|p| ready(p)).count() as i64;
    let now = now_secs();
    let names: BTreeSet<&str> = mine.iter().map(|p| name(p)).collect();
    let mut disrupted = serde_json::Map::new();
    let mut waiting = false;
    for (pod, t) in b["status"]["disruptedPods"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let at = t
            .as_str()
            .and_then(corral_api::objects::parse_rfc3339)
            .unwrap_or(0);
        if names.contains(pod.as_str()) && now - at < DISRUPTED_FOR {
            disrupted.insert(pod.clone(), t.clone());
            waiting = true;
        }
    }
    let allowed = (healthy - desired - disrupted.len() as i64).max(0);
    let key = registry::key(
        "policy",
        "poddisruptionbudgets",
        Some(namespace(b)),
        name(b),
    );
    let stamp = kv::now();
    let _ = kv::modify(store, &key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        st["observedGeneration"] = v["metadata"]["generation"].clone();
        st["expectedPods"] = json!(expected);
        st["currentHealthy"] = json!(healthy);
        st["desiredHealthy"] = json!(desired);
        st["disruptionsAllowed"] = json!(allowed);
        if disrupted.is_empty() {
            st.as_object_mut().expect("status").remove("disruptedPods");
        } else {
            st["disruptedPods"] = Value::Object(disrupted.clone());
        }
        let (status, reason, message) = if allowed > 0 {
            ("True", "SufficientPods", "")
        } else {
            ("False", "InsufficientPods", "")
        };
        let since = st["conditions"][0]["status"]
            .as_str()
            .filter(|s| *s == status)
            .and_then(|_| st["conditions"][0]["lastTransitionTime"].as_str())
            .unwrap_or(&stamp)
            .to_string();
        st["conditions"] = json!([{"type": "DisruptionAllowed", "status": status, "reason": reason,
            "message": message, "observedGeneration": v["metadata"]["generation"],
            "lastTransitionTime": since}]);
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        Change::Write
    })
    .await;
    waiting
}
