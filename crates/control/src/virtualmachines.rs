//! Placement of VirtualMachines (`corral.dev/v1`): each VM not yet on a node is given one,
//! written as `status.nodeName`, whose agent then runs it.
//!
//! A node fits when it is Ready and schedulable, and its allocatable memory less the memory
//! requests of its pods and the memory of the VMs already on it holds the VM's memory;
//! among those, the one with the most memory free. `spec.nodeName` chooses the node itself
//! (it must exist). A VM that no node can hold stays unplaced with `printableStatus:
//! ErrorUnschedulable`, a `PodScheduled` condition that says why, and a `FailedScheduling`
//! event, and is tried again when nodes or VMs change.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_api::virtualmachines::VirtualMachineSpec;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, Change};
use crate::{quantity, scheduler};

const COMPONENT: &str = "corral-vm-placement";

/// Runs placement until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("corral.dev", "virtualmachines", None),
        registry::prefix("", "nodes", None),
    ];
    kv::watch_loop(
        &store,
        &prefixes,
        "virtual machine placement",
        shutdown,
        || pass(&store),
    )
    .await
}

/// The memory a VM asks for, in bytes (its spec's, defaulted).
pub(crate) fn memory_bytes(vm: &Value) -> i64 {
    serde_json::from_value::<VirtualMachineSpec>(vm["spec"].clone())
        .map(|s| (s.memory_mib() << 20) as i64)
        .unwrap_or(0)
}

fn placed_on(vm: &Value) -> Option<&str> {
    vm["status"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// Free memory per Ready, schedulable node: allocatable less pods' requests and VMs'
/// memory.
fn free_memory(nodes: &[Value], pods: &[Value], vms: &[Value]) -> BTreeMap<String, i64> {
    let mut free = BTreeMap::new();
    for n in nodes {
        let ready = kv::is_ready(n);
        let cordoned = n["spec"]["unschedulable"].as_bool().unwrap_or(false);
        if ready && !cordoned {
            let mem = n["status"]["allocatable"]["memory"]
                .as_str()
                .and_then(quantity::bytes)
                .unwrap_or(0);
            free.insert(kv::name(n).to_owned(), mem);
        }
    }
    for p in pods {
        let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if let (Some(node), false) = (p["spec"]["nodeName"].as_str(), done) {
            if let Some(f) = free.get_mut(node) {
                *f -= scheduler::requests(p).1;
            }
        }
    }
    for v in vms {
        if let Some(node) = placed_on(v) {
            if let Some(f) = free.get_mut(node) {
                *f -= memory_bytes(v);
            }
        }
    }
    free
}

fn mib(b: i64) -> i64 {
    b.max(0) >> 20
}

/// One pass; true while a VM waits for room (to look again soon).
async fn pass(store: &Arc<dyn Store>) -> bool {
    let vm_prefix = registry::prefix("corral.dev", "virtualmachines", None);
    let Ok((vms, _)) = kv::list(store, &vm_prefix).await else {
        return true;
    };
    // Nodes change often (heartbeats); the pods are read only when a VM waits for a node.
    if !vms
        .iter()
        .any(|v| placed_on(v).is_none() && !kv::deleting(v))
    {
        return false;
    }
    let (Ok((nodes, _)), Ok((pods, _))) = (
        kv::list(store, &registry::prefix("", "nodes", None)).await,
        kv::list(store, &registry::prefix("", "pods", None)).await,
    ) else {
        return true;
    };
    let mut free = free_memory(&nodes, &pods, &vms);
    let mut waiting = false;
    for vm in vms
        .iter()
        .filter(|v| placed_on(v).is_none() && !kv::deleting(v))
    {
        let want = memory_bytes(vm);
        let chosen = match vm["spec"]["nodeName"].as_str() {
            Some(n) if nodes.iter().any(|x| kv::name(x) == n) => Ok(n.to_owned()),
            Some(n) => Err(format!("spec.nodeName: node \"{n}\" does not exist")),
            None => {
                let best = free
                    .iter()
                    .filter(|(_, f)| **f >= want)
                    .max_by_key(|(_, f)| **f)
                    .map(|(n, _)| n.clone());
                best.ok_or_else(|| {
                    let most = free.values().copied().max().unwrap_or(0);
                    if free.is_empty() {
                        "0/0 nodes are available: no node is Ready and schedulable".to_owned()
                    } else {
                        format!(
                            "0/{} nodes are available: insufficient memory (the VM asks for {} MiB; the most any node has free is {} MiB)",
                            free.len(),
                            mib(want),
                            mib(most)
                        )
                    }
                })
            }
        };
        let key = registry::key(
            "corral.dev",
            "virtualmachines",
            Some(kv::namespace(vm)),
            kv::name(vm),
        );
        let uid = kv::uid_of(vm).to_owned();
        match chosen {
            Ok(node) => {
                if let Some(f) = free.get_mut(&node) {
                    *f -= want;
                }
                let placed = kv::modify(store, &key, |v| {
                    if kv::uid_of(v) != uid || placed_on(v).is_some() {
                        return Change::Keep;
                    }
                    set_scheduled(v, Some(&node), "");
                    Change::Write
                })
                .await;
                if let Err(e) = placed {
                    tracing::warn!("placing VM {key}: {e}");
                    waiting = true;
                }
            }
            Err(why) => {
                waiting = true;
                let mut changed = false;
                let _ = kv::modify(store, &key, |v| {
                    if kv::uid_of(v) != uid || placed_on(v).is_some() {
                        return Change::Keep;
                    }
                    let before = v["status"].clone();
                    set_scheduled(v, None, &why);
                    changed = v["status"] != before;
                    if changed {
                        Change::Write
                    } else {
                        Change::Keep
                    }
                })
                .await;
                if changed {
                    kv::event(store, vm, "Warning", "FailedScheduling", &why, COMPONENT).await;
                }
            }
        }
    }
    waiting
}

/// Writes the placement (or why there is none) into a VM's status.
fn set_scheduled(v: &mut Value, node: Option<&str>, why: &str) {
    if !v["status"].is_object() {
        v["status"] = json!({});
    }
    let st = &mut v["status"];
    let mut cond = match node {
        Some(n) => {
            st["nodeName"] = json!(n);
            st["printableStatus"] = json!("Starting");
            json!({"type": "PodScheduled", "status": "True"})
        }
        None => {
            st["printableStatus"] = json!("ErrorUnschedulable");
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": why})
        }
    };
    let old: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
    // The transition time stays while the condition does.
    cond["lastTransitionTime"] = match old.iter().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == cond["status"] && c["message"] == cond["message"] => {
            c["lastTransitionTime"].clone()
        }
        _ => json!(kv::now()),
    };
    let mut conds: Vec<Value> = old
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conds.push(cond);
    st["conditions"] = json!(conds);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, mem: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name}, "status": {"allocatable": {"memory": mem},
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn free_memory_counts_pods_and_vms_on_ready_nodes() {
        let nodes = [node("a", "4Gi", true), node("b", "8Gi", false)];
        let pods = [json!({"spec": {"nodeName": "a", "containers": [
            {"resources": {"requests": {"memory": "1Gi"}}}]}, "status": {"phase": "Running"}})];
        let vms = [json!({"spec": {"image": "x", "memory": "512Mi"}, "status": {"nodeName": "a"}})];
        let free = free_memory(&nodes, &pods, &vms);
        assert_eq!(free.len(), 1, "node b is not Ready");
        assert_eq!(free["a"], (4i64 << 30) - (1 << 30) - (512 << 20));
    }

    #[test]
    fn unschedulable_then_scheduled() {
        let mut v = json!({"metadata": {"name": "x"}});
        set_scheduled(&mut v, None, "no room");
        assert_eq!(v["status"]["printableStatus"], "ErrorUnschedulable");
        assert_eq!(v["status"]["conditions"][0]["message"], "no room");
        let before = v.clone();
        set_scheduled(&mut v, None, "no room");
        assert_eq!(v, before, "nothing changed: nothing to write");
        set_scheduled(&mut v, Some("n1"), "");
        assert_eq!(v["status"]["nodeName"], "n1");
        assert_eq!(v["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
    }
}
