//! The volume controller: PersistentVolumeClaims get PersistentVolumes, as Kubernetes' PV
//! controller and an external provisioner do together.
//!
//! - A claim with no `storageClassName` gets the default class (retroactively, as Kubernetes
//!   does since 1.28).
//! - A pending claim is bound to an Available volume that fits it (its class, access modes, a
//!   capacity at least the request, its `selector`, a `claimRef` naming it if set), the
//!   smallest first; else, when its class's provisioner is corral's (`corral.dev/volume`), a
//!   volume `pvc-<claim uid>` is provisioned: a corral named volume `k8s-pvc-<claim uid>` on
//!   one node (the volume's `nodeAffinity`), made by the node agent on first mount. With
//!   `volumeBindingMode: WaitForFirstConsumer` that waits for the scheduler to name the node
//!   (the claim's `volume.kubernetes.io/selected-node` annotation); with `Immediate` the node
//!   is chosen at once.
//! - A bound volume whose claim is gone is Released; with `persistentVolumeReclaimPolicy:
//!   Delete` it is deleted, and its `corral.dev/volume` finalizer lets the node agent remove
//!   the data first. `Retain` keeps it Released, data and all.
//! - Claims carry `kubernetes.io/pvc-protection`: a claim deleted while a pod still uses it
//!   stays Terminating until no pod does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, deleting, name, namespace, Change};
use crate::quantity;

/// The provisioner of corral's named volumes.
pub const PROVISIONER: &str = "corral.dev/volume";
/// The finalizer that lets a node remove a volume's data before its object goes.
pub const VOLUME_FINALIZER: &str = "corral.dev/volume";
/// The finalizer that keeps a claim while pods use it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The annotation the scheduler sets on a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The engine volume that holds a provisioned claim's data.
pub fn volume_handle(claim_uid: &str) -> String {
    format!("k8s-pvc-{claim_uid}")
}

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("", "persistentvolumeclaims", None),
        registry::prefix("", "persistentvolumes", None),
        registry::prefix("storage.k8s.io", "storageclasses", None),
        registry::prefix("", "nodes", None),
    ];
    kv::watch_loop(&store, &prefixes, "volume controller", shutdown, || {
        sync(&store)
    })
    .await;
}

fn has_finalizer(v: &Value, f: &str) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn add_finalizer(v: &mut Value, f: &str) {
    let m = v["metadata"].as_object_mut().expect("metadata");
    let list = m.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        if !a.iter().any(|x| x == f) {
            a.push(json!(f));
        }
    }
}

fn storage(v: &Value) -> i64 {
    v.as_str().and_then(quantity::bytes).unwrap_or(0)
}

fn access_modes(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `labels` match a LabelSelector (`matchLabels` and `matchExpressions`).
fn selector_matches(sel: &Value, labels: &Value) -> bool {
    if sel.is_null() {
        return true;
    }
    let ml_ok = sel["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| &labels[k] == v));
    let me_ok = sel["matchExpressions"].as_array().is_none_or(|es| {
        es.iter().all(|e| {
            let val = labels[e["key"].as_str().unwrap_or("")].as_str();
            crate::scheduler::expr_matches(e, val)
        })
    });
    ml_ok && me_ok
}

/// Whether volume `pv` can serve `claim` (of class `class`).
fn fits(pv: &Value, claim: &Value, class: &str) -> bool {
    let spec = &pv["spec"];
    if deleting(pv) || pv["status"]["phase"].as_str().unwrap_or("Available") != "Available" {
        return false;
    }
    let cr = &spec["claimRef"];
    if !cr.is_null() {
        let names_claim = cr["name"] == claim["metadata"]["name"]
            && cr["namespace"] == claim["metadata"]["namespace"]
            && (cr["uid"].is_null() || cr["uid"] == claim["metadata"]["uid"]);
        if !names_claim {
            return false;
        }
    }
    if spec["storageClassName"].as_str().unwrap_or("") != class {
        return false;
    }
    let want = access_modes(&claim["spec"]["accessModes"]);
    let has = access_modes(&spec["accessModes"]);
    if !want.iter().all(|m| has.contains(m)) {
        return false;
    }
    if storage(&spec["capacity"]["storage"])
        < storage(&claim["spec"]["resources"]["requests"]["storage"])
    {
        return false;
    }
    let vm = |v: &Value| v.as_str().unwrap_or("Filesystem").to_string();
    if vm(&spec["volumeMode"]) != vm(&claim["spec"]["volumeMode"]) {
        return false;
    }
    selector_matches(&claim["spec"]["selector"], &pv["metadata"]["labels"])
}

fn claim_ref(claim: &Value) -> Value {
    json!({
        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
        "namespace": claim["metadata"]["namespace"], "name": claim["metadata"]["name"],
        "uid": claim["metadata"]["uid"], "resourceVersion": claim["metadata"]["resourceVersion"],
    })
}

/// The node a volume of corral's lives on (its required node affinity on the hostname).
pub fn volume_node(pv: &Value) -> Option<&str> {
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        .as_array()?
        .iter()
        .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten())
        .find(|e| e["key"] == "kubernetes.io/hostname" && e["operator"] == "In")
        .and_then(|e| e["values"][0].as_str())
}

/// One pass over every claim and volume; true while something waits on time (a claim kept
/// by a pod, a volume whose data a node still has to remove).
async fn sync(store: &Arc<dyn Store>) -> bool {
    let list = |plural: &'static str, group: &'static str| async move {
        kv::list(store, &registry::prefix(group, plural, None))
            .await
            .map(|(v, _)| v)
    };
    let (Ok(claims), Ok(volumes), Ok(classes), Ok(nodes)) = (
        list("persistentvolumeclaims", "").await,
        list("persistentvolumes", "").await,
        list("storageclasses", "storage.k8s.io").await,
        list("nodes", "").await,
    ) else {
        return true;
    };
    let classes: BTreeMap<String, Value> = classes
        .into_iter()
        .map(|c| (name(&c).to_string(), c))
        .collect();
    let default_class = classes
        .values()
        .find(|c| c["metadata"]["annotations"][DEFAULT_CLASS] == "true")
        .map(|c| name(c).to_string());
    let mut busy = false;
    let mut taken: HashSet<String> = HashSet::new();
    let claim_uids: HashSet<String> = claims
        .iter()
        .filter_map(|c| c["metadata"]["uid"].as_str().map(str::to_string))
        .collect();

    // Volumes first: phases, and releases of volumes whose claim is gone.
    for pv in &volumes {
        let key = registry::key("", "persistentvolumes", None, name(pv));
        if deleting(pv) {
            busy |= has_finalizer(pv, VOLUME_FINALIZER);
            continue;
        }
        let cr = &pv["spec"]["claimRef"];
        let phase = pv["status"]["phase"].as_str().unwrap_or("");
        let claim_gone = cr["uid"].as_str().is_some_and(|u| !claim_uids.contains(u));
        if claim_gone && phase != "Released" && phase != "Failed" {
            release(store, &key, pv).await;
        } else if phase == "Released" && pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" {
            let _ = kv::delete_like_api(store, &key).await;
        } else if phase.is_empty() || phase == "Pending" {
            let p = if cr["uid"].is_string() {
                "Bound"
            } else {
                "Available"
            };
            let _ = kv::modify(store, &key, |v| {
                v["status"] = json!({"phase": p});
                Change::Write
            })
            .await;
        }
        if let Some(u) = cr["uid"].as_str() {
            taken.insert(u.to_string());
        }
    }

    let mut available: Vec<Value> = volumes
        .iter()
        .filter(|v| {
            !deleting(v)
                && v["status"]["phase"].as_str().unwrap_or("Available") == "Available"
                && v["spec"]["claimRef"]["uid"].is_null()
        })
        .cloned()
        .collect();
    available.sort_by_key(|v| storage(&v["spec"]["capacity"]["storage"]));

    let mut pods: Option<Vec<Value>> = None;
    for claim in &claims {
        let ns = namespace(claim).to_string();
        let cname = name(claim).to_string();
        let key = registry::key("", "persistentvolumeclaims", Some(&ns), &cname);
        if deleting(claim) {
            if has_finalizer(claim, PVC_PROTECTION) {
                if pods.is_none() {
                    pods = kv::list(store, &registry::prefix("", "pods", None))
                        .await
                        .ok()
                        .map(|(p, _)| p);
                }
                if pods
                    .as_deref()
                    .is_some_and(|p| !claim_in_use(p, &ns, &cname))
                {
                    let _ = kv::remove_finalizer(store, &key, PVC_PROTECTION).await;
                } else {
                    busy = true;
                }
            }
            continue;
        }
        if !has_finalizer(claim, PVC_PROTECTION) {
            let _ = kv::modify(store, &key, |v| {
                add_finalizer(v, PVC_PROTECTION);
                Change::Write
            })
            .await;
        }
        if claim["spec"]["storageClassName"].is_null() {
            if let Some(d) = &default_class {
                let _ = kv::modify(store, &key, |v| {
                    if !v["spec"]["storageClassName"].is_null() {
                        return Change::Keep;
                    }
                    v["spec"]["storageClassName"] = json!(d);
                    Change::Write
                })
                .await;
                // The write brings the claim back through the watch.
                continue;
            }
        }
        let uid = claim["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if let Some(vol) = claim["spec"]["volumeName"].as_str() {
            // Bound (or asked for one volume by name): keep its status true.
            if let Some(pv) = volumes.iter().find(|v| name(v) == vol) {
                if pv["spec"]["claimRef"]["uid"] == json!(uid) {
                    if claim["status"]["phase"] != "Bound" {
                        set_bound(store, &key, pv).await;
                    }
                    continue;
                }
                if pv["spec"]["claimRef"]["uid"].is_null() && !taken.contains(&uid) {
                    bind(store, claim, pv).await;
                    taken.insert(uid);
                    continue;
                }
                if claim["status"]["phase"] == "Bound" {
                    // Its volume was given to another claim, or released: lost.
                    let _ = kv::modify(store, &key, |v| {
                        v["status"]["phase"] = json!("Lost");
                        Change::Write
                    })
                    .await;
                }
            }
            continue;
        }
        if taken.contains(&uid) {
            continue;
        }
        let class = claim["spec"]["storageClassName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Some(i) = available.iter().position(|pv| fits(pv, claim, &class)) {
            let pv = available.remove(i);
            bind(store, claim, &pv).await;
            taken.insert(uid);
            continue;
        }
        if class.is_empty() {
            continue;
        }
        let Some(sc) = classes.get(&class) else {
            let msg = format!("storageclass.storage.k8s.io \"{class}\" not found");
            pending(store, &key, claim, "Warning", "ProvisioningFailed", &msg).await;
            continue;
        };
        if sc["provisioner"] != PROVISIONER {
            let msg = format!(
                "waiting for a volume to be created by the external provisioner {:?} or manually by the system administrator",
                sc["provisioner"].as_str().unwrap_or("")
            );
            pending(store, &key, claim, "Normal", "ExternalProvisioning", &msg).await;
            continue;
        }
        let node = if sc["volumeBindingMode"] == "WaitForFirstConsumer" {
            match claim["metadata"]["annotations"][SELECTED_NODE].as_str() {
                Some(n) => Some(n.to_string()),
                None => {
                    let msg = "waiting for first consumer to be created before binding";
                    pending(store, &key, claim, "Normal", "WaitForFirstConsumer", msg).await;
                    continue;
                }
            }
        } else {
            ready_node(&nodes)
        };
        let Some(node) = node else {
            let msg = "no Ready node to provision the volume on";
            pending(store, &key, claim, "Warning", "ProvisioningFailed", msg).await;
            busy = true;
            continue;
        };
        provision(store, claim, sc, &node).await;
        taken.insert(uid);
    }
    busy
}

/// Whether a pod not yet finished uses the claim.
fn claim_in_use(pods: &[Value], ns: &str, claim: &str) -> bool {
    pods.iter().any(|p| {
        namespace(p) == ns
            && !matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            )
            && p["spec"]["volumes"].as_array().is_some_and(|vs| {
                vs.iter()
                    .any(|v| v["persistentVolumeClaim"]["claimName"] == claim)
            })
    })
}

/// A Ready, schedulable node: the one with the fewest volumes would need a count; the first
/// by name is as good with one node.
fn ready_node(nodes: &[Value]) -> Option<String> {
    nodes
        .iter()
        .filter(|n| n["spec"]["unschedulable"] != json!(true))
        .find(|n| {
            n["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True")
        })
        .map(|n| name(n).to_string())
}

/// Records why a claim waits, once per reason.
async fn pending(
    store: &Arc<dyn Store>,
    key: &str,
    claim: &Value,
    ty: &str,
    reason: &str,
    msg: &str,
) {
    const NOTE: &str = "corral.dev/pending-reason";
    if claim["metadata"]["annotations"][NOTE] == reason && claim["status"]["phase"] == "Pending" {
        return;
    }
    let mut changed = None;
    let _ = kv::modify(store, key, |v| {
        let m = v["metadata"].as_object_mut().expect("metadata");
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        a[NOTE] = json!(reason);
        v["status"]["phase"] = json!("Pending");
        changed = Some(v.clone());
        Change::Write
    })
    .await;
    if let Some(v) = changed {
        kv::event(store, &v, ty, reason, msg, "persistentvolume-controller").await;
    }
}

async fn provision(store: &Arc<dyn Store>, claim: &Value, sc: &Value, node: &str) {
    let uid = claim["metadata"]["uid"].as_str().unwrap_or("");
    let pv_name = format!("pvc-{uid}");
    let request = claim["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .unwrap_or("1Gi");
    let modes = if claim["spec"]["accessModes"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        claim["spec"]["accessModes"].clone()
    } else {
        json!(["ReadWriteOnce"])
    };
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name, "uid": kv::uid(), "creationTimestamp": kv::now(),
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            "finalizers": [VOLUME_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": sc["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": claim["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
            "claimRef": claim_ref(claim),
            "csi": {"driver": PROVISIONER, "volumeHandle": volume_handle(uid)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
        "status": {"phase": "Bound"},
    });
    let key = registry::key("", "persistentvolumes", None, &pv_name);
    match store.create(&key, registry::encode(&pv), 0).await {
        Ok(_) => {
            let msg = format!("Successfully provisioned volume {pv_name}");
            kv::event(
                store,
                claim,
                "Normal",
                "ProvisioningSucceeded",
                &msg,
                "corral.dev/volume",
            )
            .await;
        }
        Err(corral_store::StoreError::AlreadyExists(_)) => {}
        Err(e) => {
            tracing::warn!("provisioning {pv_name}: {e}");
            return;
        }
    }
    bind_claim(store, claim, &pv).await;
}

/// Binds an Available volume to a claim: the volume's `claimRef` first (so that no second
/// claim takes it), then the claim.
async fn bind(store: &Arc<dyn Store>, claim: &Value, pv: &Value) {
    let key = registry::key("", "persistentvolumes", None, name(pv));
    let uid = claim["metadata"]["uid"].clone();
    let mut won = None;
    let _ = kv::modify(store, &key, |v| {
        let cr = &v["spec"]["claimRef"]["uid"];
        if !cr.is_null() && cr != &uid {
            return Change::Keep;
        }
        v["spec"]["claimRef"] = claim_ref(claim);
        v["status"] = json!({"phase": "Bound"});
        let m = v["metadata"].as_object_mut().expect("metadata");
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        a["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        won = Some(v.clone());
        Change::Write
    })
    .await;
    if let Some(pv) = won {
        bind_claim(store, claim, &pv).await;
    }
}

async fn bind_claim(store: &Arc<dyn Store>, claim: &Value, pv: &Value) {
    let key = registry::key(
        "",
        "persistentvolumeclaims",
        Some(namespace(claim)),
        name(claim),
    );
    let pv_name = name(pv).to_string();
    let _ = kv::modify(store, &key, |v| {
        if v["metadata"]["uid"] != claim["metadata"]["uid"] {
            return Change::Keep;
        }
        v["spec"]["volumeName"] = json!(pv_name);
        let m = v["metadata"].as_object_mut().expect("metadata");
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        a["pv.kubernetes.io/bind-completed"] = json!("yes");
        if pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"].is_string() {
            a["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
        }
        if let Some(o) = a.as_object_mut() {
            o.remove("corral.dev/pending-reason");
        }
        Change::Write
    })
    .await;
    set_bound(store, &key, pv).await;
}

async fn set_bound(store: &Arc<dyn Store>, key: &str, pv: &Value) {
    let _ = kv::modify(store, key, |v| {
        v["status"] = json!({
            "phase": "Bound",
            "accessModes": pv["spec"]["accessModes"],
            "capacity": pv["spec"]["capacity"],
        });
        Change::Write
    })
    .await;
}

async fn release(store: &Arc<dyn Store>, key: &str, pv: &Value) {
    let _ = kv::modify(store, key, |v| {
        v["status"] = json!({"phase": "Released"});
        Change::Write
    })
    .await;
    let policy = pv["spec"]["persistentVolumeReclaimPolicy"]
        .as_str()
        .unwrap_or("Retain");
    if policy == "Delete" {
        let _ = kv::delete_like_api(store, key).await;
    } else if policy == "Recycle" {
        kv::event(
            store,
            pv,
            "Warning",
            "VolumeFailedRecycle",
            "Recycle is not supported (deprecated in Kubernetes); the volume is kept Released",
            "persistentvolume-controller",
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(class: &str, size: &str, modes: &[&str]) -> Value {
        json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
               "spec": {"storageClassName": class, "accessModes": modes,
                        "resources": {"requests": {"storage": size}}}})
    }

    fn pv(class: &str, size: &str, modes: &[&str]) -> Value {
        json!({"metadata": {"name": "p", "labels": {"tier": "fast"}},
               "spec": {"storageClassName": class, "accessModes": modes,
                        "capacity": {"storage": size}},
               "status": {"phase": "Available"}})
    }

    #[test]
    fn a_volume_fits_by_class_size_modes_and_selector() {
        let c = claim("", "1Gi", &["ReadWriteOnce"]);
        assert!(fits(
            &pv("", "2Gi", &["ReadWriteOnce", "ReadOnlyMany"]),
            &c,
            ""
        ));
        assert!(!fits(&pv("", "512Mi", &["ReadWriteOnce"]), &c, ""));
        assert!(!fits(&pv("fast", "2Gi", &["ReadWriteOnce"]), &c, ""));
        assert!(!fits(&pv("", "2Gi", &["ReadOnlyMany"]), &c, ""));
        let mut sel = c.clone();
        sel["spec"]["selector"] = json!({"matchLabels": {"tier": "slow"}});
        assert!(!fits(&pv("", "2Gi", &["ReadWriteOnce"]), &sel, ""));
        sel["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fast"]}]});
        assert!(fits(&pv("", "2Gi", &["ReadWriteOnce"]), &sel, ""));
        let mut other = pv("", "2Gi", &["ReadWriteOnce"]);
        other["spec"]["claimRef"] = json!({"namespace": "ns", "name": "d"});
        assert!(!fits(&other, &c, ""));
        other["spec"]["claimRef"] = json!({"namespace": "ns", "name": "c"});
        assert!(fits(&other, &c, ""));
        let mut bound = pv("", "2Gi", &["ReadWriteOnce"]);
        bound["status"]["phase"] = json!("Bound");
        assert!(!fits(&bound, &c, ""));
    }

    #[test]
    fn a_claim_is_in_use_until_its_pods_finish() {
        let pod = |phase: &str| {
            json!({"metadata": {"namespace": "ns"}, "status": {"phase": phase},
                   "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}})
        };
        assert!(claim_in_use(&[pod("Running")], "ns", "c"));
        assert!(!claim_in_use(&[pod("Succeeded")], "ns", "c"));
        assert!(!claim_in_use(&[pod("Running")], "other", "c"));
        assert!(!claim_in_use(&[pod("Running")], "ns", "d"));
    }

    #[test]
    fn the_node_of_a_volume_is_its_hostname_affinity() {
        let pv = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}});
        assert_eq!(volume_node(&pv), Some("n1"));
        assert_eq!(volume_node(&json!({"spec": {}})), None);
    }
}
