//! The service load balancer, as k3s's ServiceLB gives one without a cloud: a Service of type
//! `LoadBalancer` answers on its port at the InternalIP of every Ready node, and its
//! `status.loadBalancer.ingress` lists those addresses (what `kubectl get svc` shows as
//! EXTERNAL-IP). The node agents' proxies program the rules (corral-node's `proxy`).
//!
//! A host port serves one Service: when two LoadBalancer Services ask for the same port and
//! protocol, the older one keeps it and the newer stays `<pending>` (no ingress), with a
//! warning Event naming the Service that holds the port, until that one goes.

use std::collections::HashMap;
use std::sync::Arc;

use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, name, namespace, Change};

const COMPONENT: &str = "service-lb-controller";

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("", "services", None),
        registry::prefix("", "nodes", None),
    ];
    kv::watch_loop(&store, &prefixes, "service load balancer", shutdown, || {
        sync(&store)
    })
    .await;
}

/// The ports (protocol, port) a Service asks the host for.
fn host_ports(svc: &Value) -> Vec<(String, i64)> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
                p["port"].as_i64()?,
            ))
        })
        .collect()
}

/// One pass; never busy (changes wake it).
pub async fn sync(store: &Arc<dyn Store>) -> bool {
    let (Ok((services, _)), Ok((nodes, _))) = (
        kv::list(store, &registry::prefix("", "services", None)).await,
        kv::list(store, &registry::prefix("", "nodes", None)).await,
    ) else {
        return true;
    };
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| kv::is_ready(n))
        .flat_map(|n| {
            n["status"]["addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips.dedup();
    let mut lbs: Vec<&Value> = services
        .iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer" && !kv::deleting(s))
        .collect();
    // The oldest first: it keeps its ports.
    lbs.sort_by_key(|s| {
        (
            s["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            namespace(s).to_string(),
            name(s).to_string(),
        )
    });
    // A Service that is no longer a LoadBalancer loses its addresses.
    for svc in services.iter().filter(|s| {
        s["spec"]["type"] != "LoadBalancer" && s["status"]["loadBalancer"]["ingress"].is_array()
    }) {
        let key = registry::key("", "services", Some(namespace(svc)), name(svc));
        let _ = kv::modify(store, &key, |v| {
            if v["spec"]["type"] == "LoadBalancer" {
                return Change::Keep;
            }
            v["status"]["loadBalancer"] = json!({});
            Change::Write
        })
        .await;
    }
    let mut taken: HashMap<(String, i64), String> = HashMap::new();
    for svc in lbs {
        let who = format!("{}/{}", namespace(svc), name(svc));
        let clash = host_ports(svc)
            .into_iter()
            .find_map(|k| taken.get(&k).map(|o| (k, o.clone())));
        let ingress: Vec<Value> = if clash.is_some() {
            Vec::new()
        } else {
            for k in host_ports(svc) {
                taken.insert(k, who.clone());
            }
            ips.iter()
                .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
                .collect()
        };
        let key = registry::key("", "services", Some(namespace(svc)), name(svc));
        let mut changed = false;
        let _ = kv::modify(store, &key, |v| {
            let want = if ingress.is_empty() {
                json!({})
            } else {
                json!({"ingress": ingress})
            };
            if v["status"]["loadBalancer"] == want {
                return Change::Keep;
            }
            if !v["status"].is_object() {
                v["status"] = json!({});
            }
            v["status"]["loadBalancer"] = want;
            changed = true;
            Change::Write
        })
        .await;
        if let (true, Some(((proto, port), holder))) = (changed, &clash) {
            kv::event(store, svc, "Warning", "PortInUse", &format!("port {port}/{proto} is held by LoadBalancer Service {holder}: this one stays pending"), COMPONENT).await;
        }
    }
    false
}
