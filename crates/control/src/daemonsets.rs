//! The DaemonSet controller: one pod of the set on each node that should run it, as
//! Kubernetes' daemonset controller keeps them.
//!
//! - A node should run the set's pod when the template's `nodeSelector` and required node
//!   affinity match it and the pod tolerates its `NoSchedule`/`NoExecute` taints (after the
//!   tolerations every daemon pod gets: not-ready, unreachable, unschedulable, disk, memory
//!   and PID pressure, as Kubernetes adds them). Cordoned nodes still run daemon pods.
//! - The pod is pinned to its node with required node affinity on `metadata.name` (what the
//!   scheduler then binds), labelled `controller-revision-hash` and `pod-template-generation`,
//!   with a controller ownerReference to the set. A pod on a node that should not run it, a
//!   second pod on one node, and a failed pod are deleted (the last comes back).
//! - `RollingUpdate`: pods of an older template are deleted so that at most `maxUnavailable`
//!   of the set's nodes are without a Ready pod at once; `OnDelete`: only pods the user
//!   deletes come back new.
//! - Status: desiredNumberScheduled, currentNumberScheduled, numberMisscheduled, numberReady,
//!   numberAvailable, numberUnavailable, updatedNumberScheduled, observedGeneration (what
//!   `kubectl rollout status daemonset` reads). Each template is a ControllerRevision
//!   ([`crate::revisions`]), so `kubectl rollout history|undo daemonset` work.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::objects::Objects;
use corral_api::workloads::int_or_percent;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{
    self, deleting, is_ready as ready, name, namespace, now_secs, uid_of as uid, Change,
};
use crate::replicasets::{available, controller_ref, controller_uid};
use crate::statefulsets::REVISION;

const COMPONENT: &str = "daemonset-controller";

/// The tolerations every daemon pod gets.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("apps", "daemonsets", None),
        registry::prefix("", "pods", None),
        registry::prefix("", "nodes", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(&store, &prefixes, "daemonset controller", shutdown, || {
        sync(&store, &objects)
    })
    .await;
}

/// One pass over every DaemonSet; true while one made a change or waits on time.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((sets, _)) = kv::list(store, &registry::prefix("apps", "daemonsets", None)).await else {
        return true;
    };
    if sets.is_empty() {
        return false;
    }
    let (Ok((pods, _)), Ok((nodes, _))) = (
        kv::list(store, &registry::prefix("", "pods", None)).await,
        kv::list(store, &registry::prefix("", "nodes", None)).await,
    ) else {
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
        busy |= sync_one(store, objects, set, owned, &nodes).await;
    }
    busy
}

/// The pod template with the daemon tolerations added.
fn daemon_pod_spec(set: &Value) -> Value {
    let mut spec = set["spec"]["template"]["spec"].clone();
    let mut tols: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for (key, effect) in DAEMON_TOLERATIONS {
        if !tols
            .iter()
            .any(|t| t["key"] == *key && t["effect"] == *effect)
        {
            tols.push(json!({"key": key, "operator": "Exists", "effect": effect}));
        }
    }
    spec["tolerations"] = json!(tols);
    spec
}

/// Whether `node` should run the set's pod.
fn should_run(set: &Value, node: &Value) -> bool {
    let pod = json!({"spec": daemon_pod_spec(set)});
    crate::scheduler::selects_node(&pod, node)
}

/// The node a daemon pod is for: its bound node, else its affinity's.
fn node_of(p: &Value) -> Option<&str> {
    p["spec"]["nodeName"].as_str().or_else(|| {
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            .as_str()
    })
}

async fn sync_one(
    store: &Arc<dyn Store>,
    objects: &Objects,
    set: &Value,
    pods: &[Value],
    nodes: &[Value],
) -> bool {
    let ns = namespace(set);
    let rev = crate::statefulsets::revision(set);
    let mut busy = false;
    let mut on_node: HashMap<&str, Vec<&Value>> = HashMap::new();
    for p in pods.iter().filter(|p| !deleting(p)) {
        if let Some(n) = node_of(p) {
            on_node.entry(n).or_default().push(p);
        }
    }
    if set["status"]["observedGeneration"] != set["metadata"]["generation"] {
        let live: Vec<&str> = pods
            .iter()
            .filter_map(|p| p["metadata"]["labels"][REVISION].as_str())
            .collect();
        let made = crate::revisions::record(store, objects, set, "DaemonSet", &rev, &live).await;
        if let Err(e) = made {
            tracing::warn!(set = name(set), "daemonset history: {e}");
            return true;
        }
    }
    let wanted: Vec<&Value> = nodes.iter().filter(|n| should_run(set, n)).collect();
    let del = |p: &Value| registry::key("", "pods", Some(ns), name(p));
    let mut misscheduled = 0;
    // Pods where they should not be, spares and failed ones go.
    for (node, list) in &on_node {
        let keep = wanted.iter().any(|n| name(n) == *node);
        if !keep {
            misscheduled += 1;
        }
        let mut list = list.clone();
        list.sort_by_key(|p| {
            (
                p["status"]["phase"] == "Failed",
                std::cmp::Reverse(ready(p)),
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        });
        for (i, p) in list.iter().enumerate() {
            if !keep || i > 0 || p["status"]["phase"] == "Failed" {
                if kv::delete_like_api(store, &del(p)).await.is_ok() {
                    kv::event(
                        store,
                        set,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", name(p)),
                        COMPONENT,
                    )
                    .await;
                }
                busy = true;
            }
        }
    }
    let pending_delete = pods.iter().any(deleting);
    // A pod for each node that has none.
    for n in &wanted {
        let has = on_node
            .get(name(n))
            .is_some_and(|l| l.iter().any(|p| p["status"]["phase"] != "Failed"));
        // A node whose old pod is still going waits for it to be gone.
        let going = pods
            .iter()
            .any(|p| deleting(p) && node_of(p) == Some(name(n)));
        if has || going {
            continue;
        }
        match make_pod(objects, set, name(n), &rev).await {
            Ok(p) => {
                kv::event(
                    store,
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name(&p)),
                    COMPONENT,
                )
                .await
            }
            Err(e) => {
                kv::event(
                    store,
                    set,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {}", e.message),
                    COMPONENT,
                )
                .await
            }
        }
        busy = true;
    }
    // Rolling update: old pods go while few enough nodes are without a Ready pod.
    let st = &set["spec"]["updateStrategy"];
    if st["type"] != "OnDelete" && !pending_delete {
        let total = wanted.len() as i64;
        let max_unavail = int_or_percent(&st["rollingUpdate"]["maxUnavailable"])
            .map(|m| m.resolve(total, true))
            .unwrap_or(1)
            .max(1);
        let unavailable = wanted
            .iter()
            .filter(|n| {
                !on_node
                    .get(name(n))
                    .is_some_and(|l| l.iter().any(|p| ready(p)))
            })
            .count() as i64;
        let mut room = max_unavail - unavailable;
        for n in &wanted {
            if room <= 0 {
                break;
            }
            let old = on_node
                .get(name(n))
                .into_iter()
                .flatten()
                .find(|p| p["metadata"]["labels"][REVISION].as_str() != Some(rev.as_str()));
            if let Some(p) = old {
                if kv::delete_like_api(store, &del(p)).await.is_ok() {
                    kv::event(
                        store,
                        set,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", name(p)),
                        COMPONENT,
                    )
                    .await;
                }
                if ready(p) {
                    room -= 1;
                }
                busy = true;
            }
        }
    }
    busy | write_status(store, set, &wanted, &on_node, misscheduled, &rev).await
}

async fn make_pod(
    objects: &Objects,
    set: &Value,
    node: &str,
    rev: &str,
) -> Result<Value, corral_api::status::ApiError> {
    let t = &set["spec"]["template"];
    let mut labels = t["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION] = json!(rev);
    labels["pod-template-generation"] = json!(set["metadata"]["generation"]
        .as_i64()
        .unwrap_or(1)
        .to_string());
    let mut meta = json!({
        "generateName": format!("{}-", name(set)),
        "namespace": namespace(set),
        "labels": labels,
        "ownerReferences": [controller_ref(set, "apps/v1", "DaemonSet")],
    });
    if t["metadata"]["annotations"].is_object() {
        meta["annotations"] = t["metadata"]["annotations"].clone();
    }
    let mut spec = daemon_pod_spec(set);
    // Pinned to its node as Kubernetes pins it, through the scheduler.
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]
    });
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    kv::create_as_controller(objects, namespace(set), &pod).await
}

async fn write_status(
    store: &Arc<dyn Store>,
    set: &Value,
    wanted: &[&Value],
    on_node: &HashMap<&str, Vec<&Value>>,
    misscheduled: usize,
    rev: &str,
) -> bool {
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let now = now_secs();
    let mine = |n: &&Value| on_node.get(name(n)).cloned().unwrap_or_default();
    let current = wanted.iter().filter(|n| !mine(n).is_empty()).count();
    let ready_n = wanted
        .iter()
        .filter(|n| mine(n).iter().any(|p| ready(p)))
        .count();
    let avail = wanted
        .iter()
        .filter(|n| mine(n).iter().any(|p| available(p, min_ready, now)))
        .count();
    let updated = wanted
        .iter()
        .filter(|n| {
            mine(n)
                .iter()
                .any(|p| p["metadata"]["labels"][REVISION].as_str() == Some(rev))
        })
        .count();
    let key = registry::key("apps", "daemonsets", Some(namespace(set)), name(set));
    let _ = kv::modify(store, &key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        st["desiredNumberScheduled"] = json!(wanted.len());
        st["currentNumberScheduled"] = json!(current);
        st["numberMisscheduled"] = json!(misscheduled);
        st["numberReady"] = json!(ready_n);
        st["numberAvailable"] = json!(avail);
        st["numberUnavailable"] = json!(wanted.len() - avail);
        st["updatedNumberScheduled"] = json!(updated);
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
