//! This node in the store: its Node object (registered when the agent starts, its status —
//! capacity, conditions, addresses, versions — reported every
//! [`crate::NodeConfig::status_interval`] or as soon as it changes) and its Lease in
//! `kube-node-lease`, renewed every [`crate::NodeConfig::lease_interval`]: the heartbeat the
//! node lifecycle controller watches, as the kubelet's `nodelease` does.
//!
//! The agent owns the Node's `status` and the labels it sets; everything else on the object
//! (taints, `unschedulable`, other labels) belongs to users and controllers and is kept.

use std::sync::Arc;
use std::time::Instant;

use corral_store::{registry, StoreError};
use serde_json::{json, Value};

use crate::{clock, host, kv, NodeAgent};

/// The kubelet version the Node reports.
pub const KUBELET_VERSION: &str = "v1.37.0";
/// The runtime version the Node reports.
pub const RUNTIME_VERSION: &str = "corral://0.1.0";
/// The Lease's duration.
pub const LEASE_DURATION_SECONDS: i64 = 40;

impl NodeAgent {
    /// The labels the agent puts on its Node.
    fn node_labels(&self) -> Value {
        let mut l = json!({
            "kubernetes.io/hostname": self.cfg.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self.host.arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": self.host.arch,
        });
        for (k, v) in &self.cfg.labels {
            l[k] = json!(v);
        }
        l
    }

    /// What the node has, in the Node's units.
    fn capacity(&self) -> Value {
        let cpus = self.cfg.cpus.unwrap_or(self.host.cpus);
        let mem_kib = self
            .cfg
            .memory
            .map(|b| b / 1024)
            .unwrap_or(self.host.memory_kib);
        let disk_kib = host::disk(self.engine.root()).map_or(0, |(t, _)| t / 1024);
        json!({
            "cpu": cpus.to_string(),
            "memory": format!("{mem_kib}Ki"),
            "pods": self.cfg.max_pods.to_string(),
            "ephemeral-storage": format!("{disk_kib}Ki"),
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        })
    }

    /// The conditions as they are now (transition times filled in from `old`).
    fn conditions(&self, old: &Value, now: &str) -> Value {
        let mem_pressure = host::mem_available_kib().is_some_and(|k| k < 100 * 1024);
        let disk_pressure =
            host::disk(self.engine.root()).is_some_and(|(t, a)| t > 0 && a * 10 < t);
        let pid_pressure = host::pids().is_some_and(|(n, max)| max > 0 && n * 10 > max * 9);
        let cond =
            |t: &str, bad: bool, ok_reason: &str, ok_msg: &str, bad_reason: &str, bad_msg: &str| {
                let status = if bad == (t == "Ready") {
                    "False"
                } else {
                    "True"
                };
                let (reason, message) = if bad {
                    (bad_reason, bad_msg)
                } else {
                    (ok_reason, ok_msg)
                };
                let prev = old["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == t));
                let transition = match prev {
                    Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
                    _ => json!(now),
                };
                json!({
                    "type": t,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": transition,
                })
            };
        json!([
            cond(
                "MemoryPressure",
                mem_pressure,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available"
            ),
            cond(
                "DiskPressure",
                disk_pressure,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure"
            ),
            cond(
                "PIDPressure",
                pid_pressure,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available"
            ),
            cond(
                "Ready",
                false,
                "KubeletReady",
                "kubelet is posting ready status",
                "KubeletNotReady",
                "kubelet is not ready"
            ),
        ])
    }

    /// The Node's status as it is now.
    fn node_status(&self, old: &Value) -> Value {
        let now = clock::now();
        let cap = self.capacity();
        json!({
            "capacity": cap,
            "allocatable": cap,
            "conditions": self.conditions(old, &now),
            "addresses": [
                {"type": "InternalIP", "address": self.host.ip.to_string()},
                {"type": "Hostname", "address": self.cfg.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": self.host.machine_id,
                "systemUUID": self.host.system_uuid,
                "bootID": self.host.boot_id,
                "kernelVersion": self.host.kernel,
                "osImage": self.host.os_image,
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.host.arch,
            },
        })
    }

    /// Makes or refreshes the Node object; `force` writes its status even when only the
    /// heartbeat times changed. Returns the Node's uid.
    pub(crate) async fn sync_node(&self, force: bool) -> Result<String, StoreError> {
        let key = registry::key("", "nodes", None, &self.cfg.node_name);
        let updated = kv::update(&*self.store, &key, |v| {
            let mut changed = false;
            let labels = self.node_labels();
            let meta = &mut v["metadata"];
            if !meta["labels"].is_object() {
                meta["labels"] = json!({});
            }
            for (k, val) in labels.as_object().expect("labels are an object") {
                if meta["labels"][k] != *val {
                    meta["labels"][k] = val.clone();
                    changed = true;
                }
            }
            let new = self.node_status(v);
            if force || strip_heartbeats(&new) != strip_heartbeats(&v["status"]) {
                v["status"] = new;
                changed = true;
            }
            changed
        })
        .await?;
        if let Some(v) = updated {
            return Ok(v["metadata"]["uid"].as_str().unwrap_or_default().to_owned());
        }
        let uid = clock::uuid();
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.node_name,
                "uid": uid,
                "creationTimestamp": clock::now(),
                "labels": self.node_labels(),
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {},
            "status": self.node_status(&Value::Null),
        });
        if kv::create(&*self.store, &key, &node, 0).await? {
            tracing::info!(node = %self.cfg.node_name, "registered the node");
            Ok(uid)
        } else {
            // Made by someone else meanwhile: refresh that one.
            Box::pin(self.sync_node(true)).await
        }
    }

    /// Renews (or makes) the node's Lease.
    pub(crate) async fn renew_lease(&self, node_uid: &str) -> Result<(), StoreError> {
        let name = &self.cfg.node_name;
        let key = registry::key(
            "coordination.k8s.io",
            "leases",
            Some("kube-node-lease"),
            name,
        );
        let renewed = kv::update(&*self.store, &key, |v| {
            v["spec"]["holderIdentity"] = json!(name);
            v["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION_SECONDS);
            v["spec"]["renewTime"] = json!(clock::now_micro());
            true
        })
        .await?;
        if renewed.is_some() {
            return Ok(());
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": "kube-node-lease",
                "uid": clock::uuid(),
                "creationTimestamp": clock::now(),
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": node_uid,
                }],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": clock::now_micro(),
            },
        });
        kv::create(&*self.store, &key, &lease, 0).await?;
        Ok(())
    }

    /// The heartbeat: the Node and its Lease, until `shutdown`.
    pub(crate) async fn heartbeat(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last_report: Option<Instant> = None;
        let mut node_uid = String::new();
        loop {
            let due = last_report.is_none_or(|t| t.elapsed() >= self.cfg.status_interval);
            match self.sync_node(due).await {
                Ok(uid) => {
                    node_uid = uid;
                    if due {
                        last_report = Some(Instant::now());
                    }
                }
                Err(e) => tracing::warn!(node = %self.cfg.node_name, "updating the Node: {e}"),
            }
            if let Err(e) = self.renew_lease(&node_uid).await {
                tracing::warn!(node = %self.cfg.node_name, "renewing the node's Lease: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.lease_interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// A Node status without its heartbeat times, to tell a change from a heartbeat.
fn strip_heartbeats(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(cs) = s["conditions"].as_array_mut() {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    s
}
