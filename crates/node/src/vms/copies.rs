//! VirtualMachineSnapshots and VirtualMachineClones of the VMs on this node, done once each
//! by this node's agent through the engine:
//!
//! - a snapshot is the engine's snapshot of the source's VM, named as the object (what
//!   `corral vm snapshot ls NAME.NAMESPACE` lists); the object holds the agent's finalizer
//!   until the snapshot is deleted with it;
//! - a clone waits while its source runs (phase `Pending`, a condition saying so), then
//!   makes the target's VM with the engine's clone (a copy-on-write disk, a new MAC, address,
//!   hostname and machine-id) and the target VirtualMachine object, with the source's labels
//!   and spec, placed on this node and recorded as the agent's, so it is adopted, not made
//!   again;
//! - a restore puts a snapshot back into the VM it was taken of, once: a memory snapshot into
//!   a running VM resumes the saved machine in place; a stopped VM gets the snapshot's disk
//!   (and boots from it at its next start); a disk snapshot waits while the VM runs. It waits
//!   too while its snapshot is missing or not ready, and fails when the snapshot is of another
//!   VM or failed.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::virtualmachines::{engine_name, VirtualMachineSpec};
use corral_store::registry;
use corral_vm::lifecycle;
use corral_vm::store::Status;
use serde_json::{json, Value};

use super::{Record, Vms, FINALIZER};
use crate::events::EventType;
use crate::{blocking, clock, kv};

fn meta<'a>(v: &'a Value, f: &str) -> &'a str {
    v["metadata"][f].as_str().unwrap_or("")
}

fn key(plural: &str, v: &Value) -> String {
    registry::key(
        "corral.dev",
        plural,
        Some(meta(v, "namespace")),
        meta(v, "name"),
    )
}

fn finished(v: &Value) -> bool {
    matches!(v["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// Whether a restore is done or failed (it has no phase: KubeVirt's status).
fn restored(v: &Value) -> bool {
    v["status"]["complete"] == json!(true)
        || v["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Failure" && c["status"] == "True")
        })
}

/// A restore's status while it waits (`reason`, `message`).
fn restore_waiting(reason: &str, message: &str) -> Value {
    json!({"complete": false, "conditions": [
        {"type": "Progressing", "status": "False", "reason": reason, "message": message},
        {"type": "Ready", "status": "False", "reason": reason, "message": message}]})
}

impl Vms {
    /// One pass over the snapshots and clones whose source VM is on this node (`vms`: the
    /// VirtualMachines placed here; `records`: the agent's, by uid).
    pub(super) async fn copies(self: &Arc<Self>, vms: &[Value], records: &HashMap<String, Record>) {
        let vm_of = |o: &Value, field: &str| -> Option<(Value, Record)> {
            let name = o["spec"][field]["name"].as_str()?;
            let vm = vms.iter().find(|v| {
                meta(v, "namespace") == meta(o, "namespace") && meta(v, "name") == name
            })?;
            let rec = records.get(meta(vm, "uid"))?;
            Some((vm.clone(), rec.clone())).filter(|(_, r)| !r.id.is_empty())
        };
        let source = |o: &Value| vm_of(o, "source");
        for snap in self.list("virtualmachinesnapshots").await {
            let uid = meta(&snap, "uid").to_owned();
            if self.is_busy(&uid) {
                continue;
            }
            let deleting = !snap["metadata"]["deletionTimestamp"].is_null();
            match (source(&snap), deleting) {
                (Some((_, rec)), true) => {
                    let me = self.clone();
                    self.spawn(&uid, async move { me.drop_snapshot(snap, rec).await });
                }
                (None, true) => {
                    // The VM went, and its snapshots with it.
                    self.release_key(&key("virtualmachinesnapshots", &snap), &snap)
                        .await;
                }
                (Some((vm, rec)), false) if !finished(&snap) => {
                    let me = self.clone();
                    self.spawn(&uid, async move { me.take_snapshot(snap, vm, rec).await });
                }
                _ => {}
            }
        }
        for clone in self.list("virtualmachineclones").await {
            let uid = meta(&clone, "uid").to_owned();
            if finished(&clone)
                || self.is_busy(&uid)
                || !clone["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            if let Some((vm, rec)) = source(&clone) {
                let me = self.clone();
                self.spawn(&uid, async move { me.clone_vm(clone, vm, rec).await });
            }
        }
        for restore in self.list("virtualmachinerestores").await {
            let uid = meta(&restore, "uid").to_owned();
            if restored(&restore)
                || self.is_busy(&uid)
                || !restore["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            if let Some((vm, rec)) = vm_of(&restore, "target") {
                let me = self.clone();
                self.spawn(&uid, async move { me.restore_vm(restore, vm, rec).await });
            }
        }
    }

    async fn list(&self, plural: &str) -> Vec<Value> {
        let r = self
            .agent
            .store
            .range(corral_store::RangeRequest {
                prefix: registry::prefix("corral.dev", plural, None),
                ..Default::default()
            })
            .await;
        r.map(|r| r.kvs.iter().filter_map(registry::decode).collect())
            .unwrap_or_default()
    }

    /// Writes `status` into the object at `key` (of uid `uid`).
    async fn set_status(&self, key: &str, uid: &str, status: Value) {
        let _ = kv::update(&*self.agent.store, key, |v| {
            if meta(v, "uid") != uid || v["status"] == status {
                return false;
            }
            v["status"] = status.clone();
            true
        })
        .await;
    }

    async fn take_snapshot(self: Arc<Self>, snap: Value, vm: Value, rec: Record) {
        let k = key("virtualmachinesnapshots", &snap);
        let uid = meta(&snap, "uid").to_owned();
        if !self.hold_key(&k, &snap).await {
            return;
        }
        let name = meta(&snap, "name").to_owned();
        let memory = snap["spec"]["memory"].as_bool().unwrap_or(false);
        self.set_status(
            &k,
            &uid,
            json!({"phase": "InProgress", "readyToUse": false}),
        )
        .await;
        let (id, n) = (rec.id.clone(), name.clone());
        let made = blocking(&self.agent.engine, move |e| e.snapshot_vm(&id, &n, memory)).await;
        let vm_name = engine_name(&rec.namespace, &rec.name);
        let status = match made {
            Ok(s) => {
                let msg = format!("Took snapshot {name} of VM {vm_name} in {} ms", s.took_ms);
                self.event(&vm, EventType::Normal, "SnapshotTaken", &msg)
                    .await;
                json!({"phase": "Succeeded", "readyToUse": true, "creationTime": clock::now(),
                       "snapshotName": name, "sourceUID": meta(&vm, "uid"), "memory": s.memory})
            }
            Err(e) => {
                let msg = format!("snapshot {name} of VM {vm_name}: {e}");
                self.event(&vm, EventType::Warning, "SnapshotFailed", &msg)
                    .await;
                json!({"phase": "Failed", "readyToUse": false, "error": {"message": msg}})
            }
        };
        self.set_status(&k, &uid, status).await;
    }

    async fn drop_snapshot(self: Arc<Self>, snap: Value, rec: Record) {
        if snap["status"]["readyToUse"] == json!(true) {
            let (id, n) = (rec.id.clone(), meta(&snap, "name").to_owned());
            if let Err(e) =
                blocking(&self.agent.engine, move |e| e.remove_vm_snapshot(&id, &n)).await
            {
                tracing::warn!(snapshot = %meta(&snap, "name"), "deleting a VM snapshot: {e}");
            }
        }
        self.release_key(&key("virtualmachinesnapshots", &snap), &snap)
            .await;
    }

    async fn clone_vm(self: Arc<Self>, clone: Value, vm: Value, rec: Record) {
        let k = key("virtualmachineclones", &clone);
        let uid = meta(&clone, "uid").to_owned();
        let ns = meta(&clone, "namespace").to_owned();
        let target = clone["spec"]["target"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let source = meta(&vm, "name").to_owned();
        let fail = |msg: String| {
            json!({"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False", "reason": "Failed", "message": msg}]})
        };
        let target_key = registry::key("corral.dev", "virtualmachines", Some(&ns), &target);
        if let Ok(Some(_)) = kv::get(&*self.agent.store, &target_key).await {
            let msg = format!("VirtualMachine {target} already exists: name another target");
            return self.set_status(&k, &uid, fail(msg)).await;
        }
        let id = rec.id.clone();
        let state = blocking(&self.agent.engine, move |e| {
            lifecycle::current_state(&e.vms(), &id)
        })
        .await;
        if state.is_ok_and(|s| matches!(s.status, Status::Running | Status::Starting)) {
            let msg = format!(
                "waiting for VirtualMachine {source} to stop: set its runStrategy to Halted"
            );
            let st = json!({"phase": "Pending", "conditions": [
                {"type": "Ready", "status": "False", "reason": "SourceRunning", "message": msg}]});
            return self.set_status(&k, &uid, st).await;
        }
        let spec = corral_vm::clone::CloneSpec {
            source: rec.id.clone(),
            name: engine_name(&ns, &target),
            networks: None,
        };
        let made = blocking(&self.agent.engine, move |e| e.clone_vm(&spec)).await;
        let cfg = match made {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cloning VM {}: {e}", engine_name(&ns, &source));
                self.event(&vm, EventType::Warning, "CloneFailed", &msg)
                    .await;
                return self.set_status(&k, &uid, fail(msg)).await;
            }
        };
        // The target is the agent's from the start: recorded before its object exists.
        let target_uid = clock::uuid();
        let spec: VirtualMachineSpec =
            serde_json::from_value(vm["spec"].clone()).unwrap_or_default();
        let target_rec = Record {
            uid: target_uid.clone(),
            namespace: ns.clone(),
            name: target.clone(),
            id: cfg.id.clone(),
            fingerprint: spec.fingerprint(),
            ..Default::default()
        };
        let _ = self.save(&target_rec);
        let obj = json!({
            "apiVersion": "corral.dev/v1",
            "kind": "VirtualMachine",
            "metadata": {
                "name": target, "namespace": ns, "uid": target_uid, "generation": 1,
                "creationTimestamp": clock::now(),
                "labels": vm["metadata"]["labels"],
                "annotations": {"corral.dev/cloned-from": source},
                "finalizers": [FINALIZER],
            },
            "spec": vm["spec"],
            "status": {"nodeName": self.agent.cfg.node_name, "printableStatus": "Stopped",
                       "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": clock::now()}]},
        });
        let created = kv::create(&*self.agent.store, &target_key, &obj, 0).await;
        if !matches!(created, Ok(true)) {
            // Made meanwhile by someone else: the clone's VM goes again.
            let id = cfg.id.clone();
            let _ = blocking(&self.agent.engine, move |e| e.remove_vm(&id, true)).await;
            self.forget(&target_rec);
            let msg = format!("VirtualMachine {target} appeared while it was being cloned");
            return self.set_status(&k, &uid, fail(msg)).await;
        }
        let msg = format!("Cloned VM {} into {}", engine_name(&ns, &source), cfg.name);
        self.event(&vm, EventType::Normal, "Cloned", &msg).await;
        let st = json!({"phase": "Succeeded", "targetUID": target_uid, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": clock::now()}]});
        self.set_status(&k, &uid, st).await;
    }
    async fn restore_vm(self: Arc<Self>, restore: Value, vm: Value, rec: Record) {
        let k = key("virtualmachinerestores", &restore);
        let uid = meta(&restore, "uid").to_owned();
        let ns = meta(&restore, "namespace").to_owned();
        let target = meta(&vm, "name").to_owned();
        let snap_name = restore["spec"]["virtualMachineSnapshotName"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let fail = |msg: &str| {
            json!({"complete": false, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "RestoreFailed", "message": msg},
                {"type": "Ready", "status": "False", "reason": "RestoreFailed", "message": msg},
                {"type": "Failure", "status": "True", "reason": "RestoreFailed", "message": msg,
                 "lastTransitionTime": clock::now()}]})
        };
        let snap_key = registry::key(
            "corral.dev",
            "virtualmachinesnapshots",
            Some(&ns),
            &snap_name,
        );
        let snap = match kv::get(&*self.agent.store, &snap_key).await {
            Ok(Some((v, _))) => v,
            _ => {
                let msg = format!("waiting for VirtualMachineSnapshot {snap_name}: not found");
                let st = restore_waiting("SnapshotNotFound", &msg);
                return self.set_status(&k, &uid, st).await;
            }
        };
        let of = snap["spec"]["source"]["name"].as_str().unwrap_or("");
        if of != target {
            let msg = format!("VirtualMachineSnapshot {snap_name} is of VirtualMachine {of}, not {target}: a snapshot restores only into the VM it was taken of (clone it with a VirtualMachineClone)");
            return self.set_status(&k, &uid, fail(&msg)).await;
        }
        match snap["status"]["phase"].as_str() {
            Some("Succeeded") => {}
            Some("Failed") => {
                let msg = format!("VirtualMachineSnapshot {snap_name} failed: nothing to restore");
                return self.set_status(&k, &uid, fail(&msg)).await;
            }
            _ => {
                let msg = format!("waiting for VirtualMachineSnapshot {snap_name} to be ready");
                let st = restore_waiting("SnapshotNotReady", &msg);
                return self.set_status(&k, &uid, st).await;
            }
        }
        let memory = snap["status"]["memory"].as_bool().unwrap_or(false);
        let id = rec.id.clone();
        let state = blocking(&self.agent.engine, move |e| {
            lifecycle::current_state(&e.vms(), &id)
        })
        .await;
        let running = state.is_ok_and(|s| matches!(s.status, Status::Running | Status::Starting));
        if running && !memory {
            let msg = format!("waiting for VirtualMachine {target} to stop: set its runStrategy to Halted ({snap_name} is a disk snapshot)");
            let st = restore_waiting("TargetRunning", &msg);
            return self.set_status(&k, &uid, st).await;
        }
        let (id, n) = (rec.id.clone(), snap_name.clone());
        let done = blocking(&self.agent.engine, move |e| {
            e.restore_vm_snapshot(&id, &n, false)
        })
        .await;
        let vm_name = engine_name(&ns, &target);
        let status = match done {
            Ok(how) => {
                let what = match how {
                    corral_vm::snapshot::Restored::InPlace => "the running machine resumed from it",
                    _ => "its disk put back",
                };
                let msg = format!("Restored VM {vm_name} from snapshot {snap_name}: {what}");
                self.event(
                    &vm,
                    EventType::Normal,
                    "VirtualMachineRestoreComplete",
                    &msg,
                )
                .await;
                json!({"complete": true, "restoreTime": clock::now(), "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "RestoreComplete", "message": "Operation complete"},
                    {"type": "Ready", "status": "True", "reason": "RestoreComplete", "message": msg,
                     "lastTransitionTime": clock::now()}]})
            }
            Err(e) => {
                let msg = format!("restoring snapshot {snap_name} into VM {vm_name}: {e}");
                self.event(&vm, EventType::Warning, "VirtualMachineRestoreError", &msg)
                    .await;
                fail(&msg)
            }
        };
        self.set_status(&k, &uid, status).await;
    }
}
