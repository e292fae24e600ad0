//! What a pod's PersistentVolumeClaims ask of the scheduler (its VolumeBinding filter): every
//! claim exists and is not being deleted; a bound claim's volume pins the pod to the volume's
//! node; an unbound claim of an `Immediate` class keeps the pod waiting; an unbound claim of a
//! `WaitForFirstConsumer` class lets the scheduler choose, and is then told the node so that
//! its volume is provisioned there.

use std::sync::Arc;

use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, Change};
use crate::volumes::{volume_node, SELECTED_NODE};

/// A pod's claims, as the scheduler needs them.
#[derive(Debug, Default)]
pub struct PodClaims {
    /// The node the pod's volumes live on, if any does.
    pub node: Option<String>,
    /// Keys of the claims waiting for the pod's node to be chosen.
    pub waiting: Vec<String>,
}

async fn get(store: &Arc<dyn Store>, key: &str) -> Option<Value> {
    store
        .get(key)
        .await
        .ok()
        .flatten()
        .and_then(|kv| registry::decode(&kv))
}

/// Reads the pod's claims; `Err` is why the pod cannot be scheduled now (Kubernetes' words).
pub async fn of_pod(store: &Arc<dyn Store>, pod: &Value) -> Result<PodClaims, String> {
    let mut out = PodClaims::default();
    let Some(vols) = pod["spec"]["volumes"].as_array() else {
        return Ok(out);
    };
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let pin = |node: &str, out: &mut PodClaims| -> Result<(), String> {
        match &out.node {
            Some(n) if n != node => Err("node(s) had volume node affinity conflict".into()),
            _ => {
                out.node = Some(node.to_string());
                Ok(())
            }
        }
    };
    for v in vols {
        let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() else {
            continue;
        };
        let key = registry::key("", "persistentvolumeclaims", Some(ns), claim);
        let Some(c) = get(store, &key).await else {
            return Err(format!("persistentvolumeclaim \"{claim}\" not found"));
        };
        if !c["metadata"]["deletionTimestamp"].is_null() {
            return Err(format!(
                "persistentvolumeclaim \"{claim}\" is being deleted"
            ));
        }
        if let (Some(pv), "Bound") = (
            c["spec"]["volumeName"].as_str(),
            c["status"]["phase"].as_str().unwrap_or(""),
        ) {
            let pv_key = registry::key("", "persistentvolumes", None, pv);
            let Some(pv) = get(store, &pv_key).await else {
                return Err(format!(
                    "persistentvolume \"{pv}\" of claim \"{claim}\" not found"
                ));
            };
            if let Some(n) = volume_node(&pv) {
                pin(n, &mut out)?;
            }
            continue;
        }
        let class = c["spec"]["storageClassName"].as_str().unwrap_or("");
        let sc = if class.is_empty() {
            None
        } else {
            get(
                store,
                &registry::key("storage.k8s.io", "storageclasses", None, class),
            )
            .await
        };
        let wffc = sc.is_some_and(|s| s["volumeBindingMode"] == "WaitForFirstConsumer");
        if !wffc {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        match c["metadata"]["annotations"][SELECTED_NODE].as_str() {
            Some(n) => pin(n, &mut out)?,
            None => out.waiting.push(key),
        }
    }
    Ok(out)
}

/// Tells waiting claims the node their pod was given.
pub async fn select_node(store: &Arc<dyn Store>, claims: &[String], node: &str) {
    for key in claims {
        let _ = kv::modify(store, key, |v| {
            if v["metadata"]["annotations"][SELECTED_NODE].is_string() {
                return Change::Keep;
            }
            let m = v["metadata"].as_object_mut().expect("metadata");
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            a[SELECTED_NODE] = json!(node);
            Change::Write
        })
        .await;
    }
}
