//! PersistentVolumeClaims on this node: what a pod's claim mounts, and the data of corral's
//! provisioned volumes removed when their PersistentVolume is deleted.
//!
//! A bound claim mounts its volume's source: a corral named volume for the CSI driver
//! `corral.dev/volume` (the volume's `volumeHandle`, made on first mount), the host directory
//! of a `hostPath` or `local` volume. A volume of corral's that is deleted (reclaim policy
//! `Delete`, or `kubectl delete pv`) keeps the `corral.dev/volume` finalizer until the node
//! it lives on has removed the named volume; one still mounted by a container waits.

use std::sync::Arc;
use std::time::Duration;

use corral_store::{registry, Store};
use serde_json::Value;
use tokio::sync::watch;

use crate::{blocking, kv, NodeAgent};

/// The CSI driver name, provisioner and finalizer of corral's named volumes.
const CORRAL_VOLUME: &str = "corral.dev/volume";

/// What a pod's claim mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    /// An engine named volume.
    Named(String),
    /// A host path.
    Host(String),
    /// Why it cannot be mounted (yet).
    Unavailable(String),
}

/// Resolves claim `claim` of namespace `ns` to what it mounts.
pub async fn resolve(store: &dyn Store, ns: &str, claim: &str) -> ClaimSource {
    let key = registry::key("", "persistentvolumeclaims", Some(ns), claim);
    let c = match kv::get(store, &key).await {
        Ok(Some((c, _))) => c,
        Ok(None) => {
            return ClaimSource::Unavailable(format!("persistentvolumeclaim \"{claim}\" not found"))
        }
        Err(e) => return ClaimSource::Unavailable(format!("reading claim {claim:?}: {e}")),
    };
    let Some(pv_name) = c["spec"]["volumeName"]
        .as_str()
        .filter(|_| c["status"]["phase"] == "Bound")
    else {
        return ClaimSource::Unavailable(format!(
            "persistentvolumeclaim \"{claim}\" is not bound to a volume yet"
        ));
    };
    let pv = match kv::get(
        store,
        &registry::key("", "persistentvolumes", None, pv_name),
    )
    .await
    {
        Ok(Some((pv, _))) => pv,
        _ => {
            return ClaimSource::Unavailable(format!(
                "persistentvolume \"{pv_name}\" of claim \"{claim}\" not found"
            ))
        }
    };
    let spec = &pv["spec"];
    if spec["csi"]["driver"] == CORRAL_VOLUME {
        if let Some(h) = spec["csi"]["volumeHandle"].as_str() {
            return ClaimSource::Named(h.to_string());
        }
    }
    for src in ["hostPath", "local"] {
        if let Some(p) = spec[src]["path"].as_str() {
            return ClaimSource::Host(p.to_string());
        }
    }
    ClaimSource::Unavailable(format!(
        "persistentvolume \"{pv_name}\" has a source corral's node agent cannot mount (it mounts corral.dev/volume, hostPath and local volumes)"
    ))
}

/// Whether `pv` is one of corral's named volumes living on `node`.
fn on_node(pv: &Value, node: &str) -> bool {
    if pv["spec"]["csi"]["driver"] != CORRAL_VOLUME {
        return false;
    }
    let terms = &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    terms.iter().any(|t| {
        t["matchExpressions"].as_array().is_some_and(|es| {
            es.iter().any(|e| {
                e["key"] == "kubernetes.io/hostname"
                    && e["values"]
                        .as_array()
                        .is_some_and(|vs| vs.iter().any(|v| v == node))
            })
        })
    })
}

impl NodeAgent {
    /// Removes the data of this node's deleted volumes, until `shutdown`.
    pub(crate) async fn reclaim_volumes(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let prefix = registry::prefix("", "persistentvolumes", None);
        loop {
            let mut w = match self.store.watch(&prefix, 0).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("watching volumes: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            let mut waiting = self.reclaim_pass().await;
            loop {
                let wait = Duration::from_secs(if waiting { 2 } else { 60 });
                tokio::select! {
                    ev = w.events.recv() => if ev.is_none() { break },
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                while w.events.try_recv().is_ok() {}
                waiting = self.reclaim_pass().await;
            }
        }
    }

    /// One pass; true while a deleted volume's data could not be removed yet.
    async fn reclaim_pass(&self) -> bool {
        let prefix = registry::prefix("", "persistentvolumes", None);
        let Ok(r) = self
            .store
            .range(corral_store::RangeRequest {
                prefix,
                ..Default::default()
            })
            .await
        else {
            return true;
        };
        let mut waiting = false;
        for pv in r.kvs.iter().filter_map(registry::decode) {
            let doomed = !pv["metadata"]["deletionTimestamp"].is_null()
                && pv["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == CORRAL_VOLUME));
            if !doomed || !on_node(&pv, &self.cfg.node_name) {
                continue;
            }
            let Some(handle) = pv["spec"]["csi"]["volumeHandle"].as_str() else {
                continue;
            };
            let vol = handle.to_string();
            let r = blocking(&self.engine, move |e| -> Result<(), String> {
                let volumes = e.volumes().map_err(|e| e.to_string())?;
                let containers = e.containers().map_err(|e| e.to_string())?;
                match volumes.remove(&vol, &containers) {
                    Ok(_) | Err(corral_container::volumes::VolumeError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
            let name = pv["metadata"]["name"].as_str().unwrap_or("").to_string();
            match r {
                Ok(()) => {
                    tracing::info!(volume = %name, "removed the data of a deleted volume");
                    let key = registry::key("", "persistentvolumes", None, &name);
                    let _ = kv::update(&*self.store, &key, |v| {
                        let Some(list) = v["metadata"]["finalizers"].as_array_mut() else {
                            return false;
                        };
                        let before = list.len();
                        list.retain(|f| f != CORRAL_VOLUME);
                        list.len() != before
                    })
                    .await;
                    self.delete_if_unfinalized(&key).await;
                }
                Err(e) => {
                    tracing::info!(volume = %name, "the data of a deleted volume waits: {e}");
                    waiting = true;
                }
            }
        }
        waiting
    }

    /// Deletes an object marked for deletion once no finalizer is left on it.
    async fn delete_if_unfinalized(&self, key: &str) {
        if let Ok(Some(kvp)) = self.store.get(key).await {
            if let Some(v) = registry::decode(&kvp) {
                let empty = v["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty());
                if empty && !v["metadata"]["deletionTimestamp"].is_null() {
                    let _ = self.store.delete(key, kvp.mod_revision).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_volume_is_this_nodes_by_its_hostname_affinity() {
        let pv = |node: &str| {
            json!({"spec": {"csi": {"driver": CORRAL_VOLUME, "volumeHandle": "k8s-pvc-x"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
        };
        assert!(on_node(&pv("n1"), "n1"));
        assert!(!on_node(&pv("n2"), "n1"));
        assert!(!on_node(
            &json!({"spec": {"hostPath": {"path": "/x"}}}),
            "n1"
        ));
    }
}
