//! The endpoints controller: each Service with a selector gets an `Endpoints` object and
//! `EndpointSlices` listing the pods it selects, as Kubernetes' endpoints and endpointslice
//! controllers keep them.
//!
//! - A pod counts once it has an IP; it is ready when its Ready condition is True (or the
//!   Service says `publishNotReadyAddresses`), and terminating once deleted.
//! - A named `targetPort` is resolved per pod from its containers' ports; pods whose ports
//!   resolve alike share one slice (`<service>-<hash of the ports>`); a pod that lacks a
//!   named port is left out of that port.
//! - VirtualMachines (`corral.dev/v1`) are selected by their labels as pods are, once
//!   they have an address (their first interface's); Ready when their Ready condition is.
//! - Both kinds carry an ownerReference to their Service, so the garbage collector removes
//!   them with it (Kubernetes does that for slices; its Endpoints go by the controller).
//! - Slices are labelled `kubernetes.io/service-name` and
//!   `endpointslice.kubernetes.io/managed-by`, as the proxy and kubectl look them up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_api::selector::LabelSelector;
use corral_store::{registry, Store};
use serde_json::{json, Map, Value};

use crate::kv::{self, is_ready as ready, Change};
use crate::replicasets::{deleting, name, namespace, uid};

/// The value of `endpointslice.kubernetes.io/managed-by` on slices this controller keeps.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("", "services", None),
        registry::prefix("", "pods", None),
        registry::prefix("corral.dev", "virtualmachines", None),
    ];
    kv::watch_loop(&store, &prefixes, "endpoints controller", shutdown, || {
        sync(&store)
    })
    .await;
}

/// One pass over every Service.
pub async fn sync(store: &Arc<dyn Store>) -> bool {
    let Ok((services, _)) = kv::list(store, &registry::prefix("", "services", None)).await else {
        return true;
    };
    if services.is_empty() {
        return false;
    }
    let Ok((pods, _)) = kv::list(store, &registry::prefix("", "pods", None)).await else {
        return true;
    };
    let vms = kv::list(
        store,
        &registry::prefix("corral.dev", "virtualmachines", None),
    )
    .await
    .map(|(vms, _)| vms.iter().filter_map(vm_as_member).collect::<Vec<_>>())
    .unwrap_or_default();
    let mut by_ns: HashMap<&str, Vec<&Value>> = HashMap::new();
    for p in pods.iter().chain(&vms) {
        by_ns.entry(namespace(p)).or_default().push(p);
    }
    for svc in &services {
        if deleting(svc)
            || svc["spec"]["selector"]
                .as_object()
                .is_none_or(Map::is_empty)
        {
            continue;
        }
        let pods = by_ns.get(namespace(svc)).map(Vec::as_slice).unwrap_or(&[]);
        sync_one(store, svc, pods).await;
    }
    false
}

/// A VirtualMachine as a Service's member, in the shape of a pod (its labels, node, first
/// address and Ready condition; no container ports, so only numeric `targetPort`s reach it).
/// `None` until it has an address.
fn vm_as_member(vm: &Value) -> Option<Value> {
    let st = &vm["status"];
    let ip = st["interfaces"]
        .as_array()?
        .iter()
        .find_map(|i| i["ipAddress"].as_str().filter(|a| !a.is_empty()))?;
    let ready = if kv::is_ready(vm) { "True" } else { "False" };
    Some(json!({
        "kind": "VirtualMachine",
        "metadata": vm["metadata"],
        "spec": {"nodeName": st["nodeName"]},
        "status": {"podIP": ip, "phase": "Running",
                   "conditions": [{"type": "Ready", "status": ready}]},
    }))
}

/// The kind a member's `targetRef` names.
fn member_kind(p: &Value) -> &str {
    p["kind"].as_str().unwrap_or("Pod")
}

/// The port a service port reaches on `pod`: a number, or the container port so named.
fn target_port(sp: &Value, pod: &Value) -> Option<i64> {
    match &sp["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"] == s.as_str())
            .and_then(|p| p["containerPort"].as_i64()),
        _ => sp["port"].as_i64(),
    }
}

/// The endpoint of one pod in a slice of service `service`: with the pod's hostname when the
/// pod names the service as its subdomain (a StatefulSet's pods: `web-0.web`), for DNS.
fn endpoint(p: &Value, is_ready: bool, service: &str) -> Value {
    let terminating = deleting(p);
    let mut e = json!({
        "addresses": [p["status"]["podIP"]],
        "conditions": {"ready": is_ready && !terminating, "serving": ready(p), "terminating": terminating},
        "nodeName": p["spec"]["nodeName"],
        "targetRef": {"kind": member_kind(p), "namespace": namespace(p), "name": name(p), "uid": uid(p)},
    });
    if p["spec"]["subdomain"] == service {
        if let Some(h) = p["spec"]["hostname"].as_str().filter(|h| !h.is_empty()) {
            e["hostname"] = json!(h);
        }
    }
    e
}

async fn sync_one(store: &Arc<dyn Store>, svc: &Value, pods: &[&Value]) {
    let ns = namespace(svc);
    let sname = name(svc);
    let sel = svc["spec"]["selector"]
        .as_object()
        .and_then(|m| LabelSelector::from_map(m).ok());
    let Some(sel) = sel else { return };
    let publish_all = svc["spec"]["publishNotReadyAddresses"] == json!(true);
    let sports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    // Pods grouped by how the service's ports resolve on them.
    let mut groups: BTreeMap<Vec<(String, i64, String)>, Vec<&Value>> = BTreeMap::new();
    for p in pods {
        let has_ip = p["status"]["podIP"].as_str().is_some_and(|s| !s.is_empty());
        let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if !has_ip || done || !sel.matches(p.get("metadata").and_then(|m| m.get("labels"))) {
            continue;
        }
        let ports: Vec<(String, i64, String)> = sports
            .iter()
            .filter_map(|sp| {
                Some((
                    sp["name"].as_str().unwrap_or("").to_string(),
                    target_port(sp, p)?,
                    sp["protocol"].as_str().unwrap_or("TCP").to_string(),
                ))
            })
            .collect();
        groups.entry(ports).or_default().push(p);
    }
    let owner = json!({"apiVersion": "v1", "kind": "Service", "name": sname, "uid": uid(svc),
        "controller": true, "blockOwnerDeletion": true});
    let port_list = |ports: &[(String, i64, String)]| -> Vec<Value> {
        ports
            .iter()
            .map(|(n, p, proto)| {
                let mut v = json!({"port": p, "protocol": proto});
                if !n.is_empty() {
                    v["name"] = json!(n);
                }
                v
            })
            .collect()
    };
    // Endpoints: one subset per group.
    let mut subsets = Vec::new();
    for (ports, members) in &groups {
        let (mut addrs, mut not_ready) = (Vec::new(), Vec::new());
        for p in members {
            let a = json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
                "targetRef": {"kind": member_kind(p), "namespace": ns, "name": name(p), "uid": uid(p)}});
            if (ready(p) || publish_all) && !deleting(p) {
                addrs.push(a);
            } else {
                not_ready.push(a);
            }
        }
        let mut sub = json!({"ports": port_list(ports)});
        if !addrs.is_empty() {
            sub["addresses"] = json!(addrs);
        }
        if !not_ready.is_empty() {
            sub["notReadyAddresses"] = json!(not_ready);
        }
        if !ports.is_empty() {
            subsets.push(sub);
        }
    }
    let mut labels = svc["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert("endpoints.corral.dev/managed".into(), json!("true"));
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": sname, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
        "subsets": subsets,
    });
    put(
        store,
        &registry::key("", "endpoints", Some(ns), sname),
        ep,
        &["subsets", "metadata.labels"],
    )
    .await;

    // Slices: one per group; those of groups that went are deleted.
    let mut wanted = Vec::new();
    for (ports, members) in &groups {
        let h = corral_store::meta::fnv1a(format!("{ports:?}").bytes());
        let slice_name = format!("{sname}-{:05x}", h & 0xfffff);
        let eps: Vec<Value> = members
            .iter()
            .map(|p| endpoint(p, ready(p) || publish_all, sname))
            .collect();
        let mut labels = svc["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert(SERVICE_NAME.into(), json!(sname));
        labels.insert(
            "endpointslice.kubernetes.io/managed-by".into(),
            json!(MANAGED_BY),
        );
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": ns, "labels": labels, "ownerReferences": [owner]},
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": port_list(ports),
        });
        put(
            store,
            &registry::key("discovery.k8s.io", "endpointslices", Some(ns), &slice_name),
            slice,
            &["endpoints", "ports", "metadata.labels"],
        )
        .await;
        wanted.push(slice_name);
    }
    if let Ok((slices, _)) = kv::list(
        store,
        &registry::prefix("discovery.k8s.io", "endpointslices", Some(ns)),
    )
    .await
    {
        for s in slices {
            let mine = s["metadata"]["labels"][SERVICE_NAME] == sname
                && s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY;
            if mine && !wanted.iter().any(|w| w == name(&s)) {
                let key = registry::key("discovery.k8s.io", "endpointslices", Some(ns), name(&s));
                let _ = kv::modify(store, &key, |_| Change::Delete).await;
            }
        }
    }
}

/// Creates `obj` at `key`, or writes the `fields` (dotted paths) of the stored one when they
/// differ.
async fn put(store: &Arc<dyn Store>, key: &str, obj: Value, fields: &[&str]) {
    let get = |v: &Value, f: &str| -> Value {
        f.split('.').fold(v.clone(), |acc, part| acc[part].clone())
    };
    let mut exists = false;
    let _ = kv::modify(store, key, |v| {
        exists = true;
        let same = fields.iter().all(|f| get(v, f) == get(&obj, f));
        if same {
            return Change::Keep;
        }
        for f in fields {
            let (head, last) = match f.rsplit_once('.') {
                Some((h, l)) => (Some(h), l),
                None => (None, *f),
            };
            let target = match head {
                Some(h) => h.split('.').fold(&mut *v, |acc, part| &mut acc[part]),
                None => &mut *v,
            };
            target[last] = get(&obj, f);
        }
        Change::Write
    })
    .await;
    if !exists {
        let mut obj = obj;
        obj["metadata"]["uid"] = json!(kv::uid());
        obj["metadata"]["creationTimestamp"] = json!(kv::now());
        let _ = store.create(key, registry::encode(&obj), 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(
            target_port(&json!({"targetPort": "http"}), &pod),
            Some(8080)
        );
        assert_eq!(target_port(&json!({"targetPort": "grpc"}), &pod), None);
        assert_eq!(target_port(&json!({"targetPort": 9000}), &pod), Some(9000));
        assert_eq!(target_port(&json!({"port": 80}), &pod), Some(80));
    }
}
