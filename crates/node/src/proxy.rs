//! The service proxy (kube-proxy's job): Services and their EndpointSlices, read from the
//! store, made into the nftables rules of `corral_net::services` — a Service's cluster IP,
//! node ports and load balancer addresses (port at each `status.loadBalancer.ingress`
//! address) lead, at random, to its ready endpoints (falling back to serving ones
//! that are terminating, as kube-proxy does, so a rollout loses no connection).
//! `internalTrafficPolicy: Local` keeps the virtual IP's traffic, and `externalTrafficPolicy:
//! Local` the node port's and load balancer's, to this node's endpoints, where a client on
//! another host keeps its address (only this host's own connections are masqueraded).
//!
//! It runs one pass at start and one after each burst of changes; only services whose
//! rules changed are rewritten. With no services left it removes its table. It also gives
//! each Service with a cluster IP its DNS name, `<name>.<namespace>.svc.cluster.local`, in
//! the records of the pods' network (whose DNS server the pods ask, with the search domains
//! the node agent gives them); a headless Service's name leads to its ready pods, and a
//! StatefulSet's pods get `<pod>.<service>.<namespace>.svc.cluster.local`. Each server's
//! node has a table of its own (`corral-svc-<hash of the node name>`), so two servers on
//! one host do not undo each other's rules.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use corral_net::ports::Protocol;
use corral_net::services::{Backend, ServiceProxy, ServiceRule};
use corral_store::{registry, RangeRequest, Store};
use serde_json::Value;

/// The nftables table of `node`'s services.
pub fn table_name(node: &str) -> String {
    format!("corral-svc-{:08x}", corral_store::meta::fnv1a(node.bytes()))
}

async fn list(store: &Arc<dyn Store>, prefix: &str) -> Option<Vec<Value>> {
    let r = store
        .range(RangeRequest {
            prefix: prefix.to_string(),
            ..Default::default()
        })
        .await
        .ok()?;
    Some(r.kvs.iter().filter_map(registry::decode).collect())
}

/// The rules the Services and slices ask for, on node `node` (whose endpoints are the local
/// ones of `internalTrafficPolicy`/`externalTrafficPolicy: Local`).
pub fn rules(services: &[Value], slices: &[Value], node: &str) -> Vec<ServiceRule> {
    let mut by_service: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
    for s in slices {
        let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
        if let Some(svc) = s["metadata"]["labels"]["kubernetes.io/service-name"].as_str() {
            by_service.entry((ns, svc)).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let spec = &svc["spec"];
        let Some(vip) = spec["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if spec["type"] == "ExternalName" {
            continue;
        }
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
        let name = svc["metadata"]["name"].as_str().unwrap_or("");
        let slices = by_service.get(&(ns, name)).cloned().unwrap_or_default();
        let affinity = (spec["sessionAffinity"] == "ClientIP").then(|| {
            spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
                .as_u64()
                .unwrap_or(10800) as u32
        });
        for sp in spec["ports"].as_array().into_iter().flatten() {
            let protocol = match sp["protocol"].as_str().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => continue,
            };
            let Some(port) = sp["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let pname = sp["name"].as_str().unwrap_or("");
            let (mut ready, mut serving) = (Vec::new(), Vec::new());
            let (mut local_ready, mut local_serving) = (Vec::new(), Vec::new());
            for sl in &slices {
                let Some(target) = sl["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| {
                        p["name"].as_str().unwrap_or("") == pname && p["protocol"] == sp["protocol"]
                    })
                    .and_then(|p| p["port"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for ep in sl["endpoints"].as_array().into_iter().flatten() {
                    let c = &ep["conditions"];
                    let here = ep["nodeName"] == node;
                    for a in ep["addresses"].as_array().into_iter().flatten() {
                        let Some(ip) = a.as_str().and_then(|s| s.parse().ok()) else {
                            continue;
                        };
                        let b = Backend { ip, port: target };
                        if c["ready"] != Value::Bool(false) {
                            if here {
                                local_ready.push(b.clone());
                            }
                            ready.push(b);
                        } else if c["serving"] == Value::Bool(true) {
                            if here {
                                local_serving.push(b.clone());
                            }
                            serving.push(b);
                        }
                    }
                }
            }
            let pick = |ready: Vec<Backend>, serving: Vec<Backend>| {
                let mut b = if ready.is_empty() { serving } else { ready };
                b.sort_by_key(|b| (b.ip, b.port));
                b.dedup();
                b
            };
            let local = pick(local_ready, local_serving);
            let all = pick(ready, serving);
            // `Local` policies send only to this node's endpoints (none: the traffic is dropped,
            // as kube-proxy drops it).
            let backends = if spec["internalTrafficPolicy"] == "Local" {
                local.clone()
            } else {
                all
            };
            let external_local = spec["externalTrafficPolicy"] == "Local";
            let outside = if external_local {
                local
            } else {
                backends.clone()
            };
            let id = format!(
                "{ns}/{name}/{}",
                if pname.is_empty() {
                    port.to_string()
                } else {
                    pname.to_string()
                }
            );
            // A LoadBalancer answers on its port at each address its status gives (the
            // nodes' addresses, from the service load balancer controller).
            if spec["type"] == "LoadBalancer" {
                for ing in svc["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let Some(ip) = ing["ip"].as_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    out.push(ServiceRule {
                        id: format!("{id}/lb/{ip}"),
                        vip: None,
                        port,
                        protocol,
                        node_port: Some(port),
                        node_ip: Some(ip),
                        backends: outside.clone(),
                        affinity_seconds: affinity,
                        keep_client: external_local,
                    });
                }
            }
            let node_port = sp["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok());
            if external_local && node_port.is_some() {
                out.push(ServiceRule {
                    id: format!("{id}/external"),
                    vip: None,
                    port,
                    protocol,
                    node_port,
                    node_ip: None,
                    backends: outside,
                    affinity_seconds: affinity,
                    keep_client: true,
                });
            }
            out.push(ServiceRule {
                id,
                vip: Some(vip),
                port,
                protocol,
                node_port: node_port.filter(|_| !external_local),
                node_ip: None,
                backends,
                affinity_seconds: affinity,
                keep_client: false,
            });
        }
    }
    out
}

/// A DNS record the proxy keeps: its address and the other names that lead to it.
type Named = (Ipv4Addr, Vec<String>);

/// The DNS records the Services ask for, by record name: `<name>.<namespace>.svc.cluster.local`
/// → the cluster IP; for a headless Service (`clusterIP: None`) that name → each ready
/// endpoint's address, one record per endpoint named `<hostname>.<service>...` when the
/// endpoint has a hostname (a StatefulSet's `web-0.web.default.svc.cluster.local`), else
/// `<address with dashes>.<service>...`, the service's name an alias of each.
pub fn names(services: &[Value], slices: &[Value]) -> HashMap<String, Named> {
    let mut out = HashMap::new();
    for svc in services {
        let (Some(name), Some(ns)) = (
            svc["metadata"]["name"].as_str(),
            svc["metadata"]["namespace"].as_str(),
        ) else {
            continue;
        };
        let fqdn = format!("{name}.{ns}.svc.{}", crate::runspec::CLUSTER_DOMAIN);
        match svc["spec"]["clusterIP"].as_str() {
            Some("None") => {
                for sl in slices.iter().filter(|sl| {
                    sl["metadata"]["namespace"] == ns
                        && sl["metadata"]["labels"]["kubernetes.io/service-name"] == name
                }) {
                    for ep in sl["endpoints"].as_array().into_iter().flatten() {
                        if ep["conditions"]["ready"] == Value::Bool(false) {
                            continue;
                        }
                        let Some(ip) = ep["addresses"][0]
                            .as_str()
                            .and_then(|a| a.parse::<Ipv4Addr>().ok())
                        else {
                            continue;
                        };
                        let host = ep["hostname"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| ip.to_string().replace('.', "-"));
                        out.insert(format!("{host}.{fqdn}"), (ip, vec![fqdn.clone()]));
                    }
                }
            }
            Some(ip) => {
                if let Ok(ip) = ip.parse() {
                    out.insert(fqdn, (ip, Vec::new()));
                }
            }
            None => {}
        }
    }
    out
}

/// The aliases the ExternalName Services ask for: `<name>.<namespace>.svc.cluster.local` →
/// `spec.externalName` (the DNS server answers a CNAME and then the target's addresses).
pub fn cnames(services: &[Value]) -> HashMap<String, String> {
    services
        .iter()
        .filter(|svc| svc["spec"]["type"] == "ExternalName")
        .filter_map(|svc| {
            let name = svc["metadata"]["name"].as_str()?;
            let ns = svc["metadata"]["namespace"].as_str()?;
            let target = svc["spec"]["externalName"].as_str()?;
            let fqdn = format!("{name}.{ns}.svc.{}", crate::runspec::CLUSTER_DOMAIN);
            Some((fqdn, target.trim_end_matches('.').to_owned()))
        })
        .collect()
}

/// Makes the network's DNS file hold `want` of the entries this proxy keeps (`have`):
/// removes what is no longer wanted, writes what is new or changed; an entry whose write
/// fails stays out of `have`, so the next pass tries again.
fn reconcile<T: Clone + PartialEq>(
    have: &mut HashMap<String, T>,
    want: &HashMap<String, T>,
    remove: impl Fn(&str) -> Result<bool, corral_net::dns::DnsError>,
    write: impl Fn(&str, &T) -> Result<(), corral_net::dns::DnsError>,
) {
    for name in have.clone().keys().filter(|n| !want.contains_key(*n)) {
        if remove(name).is_ok() {
            have.remove(name);
        }
    }
    for (name, v) in want {
        if have.get(name) == Some(v) {
            continue;
        }
        match write(name, v) {
            Ok(()) => {
                have.insert(name.clone(), v.clone());
            }
            Err(e) => tracing::warn!("DNS name {name}: {e}"),
        }
    }
}

/// Makes the network's records hold `want` of the names this proxy keeps (`have`).
fn sync_names(
    dir: &std::path::Path,
    have: &mut HashMap<String, Named>,
    want: &HashMap<String, Named>,
) {
    use corral_net::dns;
    reconcile(
        have,
        want,
        |name| dns::remove_record(dir, name),
        |name, named| {
            let r = dns::Record {
                name: name.to_owned(),
                aliases: named.1.clone(),
                ipv4: named.0,
            };
            dns::add_record(dir, r)
        },
    );
}

/// Makes the network's aliases hold `want` of those this proxy keeps (`have`).
fn sync_cnames(
    dir: &std::path::Path,
    have: &mut HashMap<String, String>,
    want: &HashMap<String, String>,
) {
    use corral_net::dns;
    reconcile(
        have,
        want,
        |name| dns::remove_cname(dir, name),
        |name, target| {
            let c = dns::Cname {
                name: name.to_owned(),
                target: target.clone(),
            };
            dns::set_cname(dir, c)
        },
    );
}

/// Runs until `shutdown` turns true. `records` is the directory of the network whose DNS
/// server the pods ask (service names go there).
pub async fn run(
    store: Arc<dyn Store>,
    node: String,
    records: Option<std::path::PathBuf>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let named = Arc::new(std::sync::Mutex::new(HashMap::<String, Named>::new()));
    let aliased = Arc::new(std::sync::Mutex::new(HashMap::<String, String>::new()));
    let proxy = Arc::new(std::sync::Mutex::new(ServiceProxy::with_table(
        &table_name(&node),
    )));
    let svc_prefix = registry::prefix("", "services", None);
    let slice_prefix = registry::prefix("discovery.k8s.io", "endpointslices", None);
    let mut last: Option<Vec<ServiceRule>> = None;
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = Vec::new();
        for p in [&svc_prefix, &slice_prefix] {
            if let Ok(mut w) = store.watch(p, 0).await {
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    while w.events.recv().await.is_some() {
                        let _ = tx.try_send(());
                    }
                }));
            }
        }
        drop(tx);
        loop {
            let (Some(services), Some(slices)) = (
                list(&store, &svc_prefix).await,
                list(&store, &slice_prefix).await,
            ) else {
                break;
            };
            if let Some(dir) = records.clone() {
                let want = names(&services, &slices);
                let want_aliases = cnames(&services);
                let (named, aliased) = (named.clone(), aliased.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    sync_names(&dir, &mut named.lock().expect("names lock"), &want);
                    sync_cnames(
                        &dir,
                        &mut aliased.lock().expect("aliases lock"),
                        &want_aliases,
                    );
                })
                .await;
            }
            let want = rules(&services, &slices, &node);
            if last.as_ref() != Some(&want) {
                let p = proxy.clone();
                let w = want.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let mut p = p.lock().expect("proxy lock");
                    if w.is_empty() {
                        p.remove().map(|()| 0)
                    } else {
                        p.sync(&w)
                    }
                })
                .await;
                match done {
                    Ok(Ok(_)) => last = Some(want),
                    Ok(Err(e)) => {
                        tracing::warn!("service rules: {e}");
                        last = None;
                    }
                    Err(e) => tracing::warn!("service rules: {e}"),
                }
            }
            let wait = if last.is_none() { 1 } else { 30 };
            tokio::select! {
                ev = rx.recv() => if ev.is_none() { break },
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {},
                _ = shutdown.changed() => {
                    tasks.iter().for_each(|t| t.abort());
                    return;
                }
            }
            while rx.try_recv().is_ok() {}
        }
        tasks.iter().for_each(|t| t.abort());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_endpoints_first_then_serving_terminating_ones() {
        let svc = json!({"metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.43.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let slice = |ready: bool, serving: bool| {
            json!({"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.88.0.2"], "conditions": {"ready": ready, "serving": serving}},
                {"addresses": ["10.88.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            ]})
        };
        let r = rules(std::slice::from_ref(&svc), &[slice(true, true)], "n1");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].vip, Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(r[0].node_port, Some(30080));
        assert_eq!(
            r[0].backends,
            vec![Backend {
                ip: Ipv4Addr::new(10, 88, 0, 2),
                port: 8080
            }]
        );
        // No ready endpoint: the serving, terminating ones still get traffic.
        let r = rules(std::slice::from_ref(&svc), &[slice(false, false)], "n1");
        assert_eq!(
            r[0].backends,
            vec![Backend {
                ip: Ipv4Addr::new(10, 88, 0, 3),
                port: 8080
            }]
        );
        assert_ne!(table_name("a"), table_name("b"));
    }

    #[test]
    fn headless_services_name_their_ready_pods() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "None"}});
        let vip = json!({"metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.9"}});
        let slice = json!({"metadata": {"namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [
                {"addresses": ["10.88.0.5"], "hostname": "web-0", "conditions": {"ready": true}},
                {"addresses": ["10.88.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.88.0.7"], "hostname": "web-2", "conditions": {"ready": false}}]});
        let n = names(&[svc, vip], &[slice]);
        let fqdn = "web.default.svc.cluster.local".to_string();
        assert_eq!(
            n["web-0.web.default.svc.cluster.local"],
            (Ipv4Addr::new(10, 88, 0, 5), vec![fqdn.clone()])
        );
        assert_eq!(
            n["10-88-0-6.web.default.svc.cluster.local"],
            (Ipv4Addr::new(10, 88, 0, 6), vec![fqdn])
        );
        assert!(!n.contains_key("web-2.web.default.svc.cluster.local"));
        assert_eq!(
            n["api.default.svc.cluster.local"].0,
            Ipv4Addr::new(10, 43, 0, 9)
        );
        assert_eq!(n.len(), 3);
    }

    #[test]
    fn external_names_become_aliases() {
        let ext = json!({"metadata": {"name": "db", "namespace": "prod"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com."}});
        let vip = json!({"metadata": {"name": "api", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.9"}});
        let c = cnames(&[ext, vip]);
        assert_eq!(c.len(), 1);
        assert_eq!(c["db.prod.svc.cluster.local"], "db.example.com");
    }

    #[test]
    fn local_traffic_policies_keep_to_this_nodes_endpoints() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.10", "internalTrafficPolicy": "Local",
                "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let slice = json!({"metadata": {"namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.88.0.2"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.88.0.3"], "nodeName": "n2", "conditions": {"ready": true}}]});
        let r = rules(
            std::slice::from_ref(&svc),
            std::slice::from_ref(&slice),
            "n1",
        );
        let here = vec![Backend {
            ip: Ipv4Addr::new(10, 88, 0, 2),
            port: 8080,
        }];
        assert_eq!(r.len(), 2, "{r:?}");
        let external = r.iter().find(|x| x.id.ends_with("/external")).unwrap();
        assert_eq!((external.vip, external.node_port), (None, Some(30080)));
        assert_eq!(external.backends, here);
        let internal = r.iter().find(|x| x.vip.is_some()).unwrap();
        assert_eq!(internal.node_port, None);
        assert_eq!(internal.backends, here);
        // On a node with no endpoint of its own: nothing to send to.
        let r = rules(std::slice::from_ref(&svc), &[slice], "n3");
        assert!(r.iter().all(|x| x.backends.is_empty()));
    }
}
