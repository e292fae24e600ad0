//! Services' API rules: what a create defaults (type, protocol, target port, affinity), the
//! virtual IP it is given from the service range and the node ports from theirs, what a
//! write must satisfy (ports named and unique, node ports in range and free, a type that
//! exists), and what may not change (the cluster IP).
//!
//! Addresses and node ports are taken from what the stored Services hold, under one lock
//! per server, so two creates at once cannot get the same one. (Several API servers over
//! one etcd would need an allocation record in the store; corral runs one per cluster.)

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use corral_store::{registry, RangeRequest, Store};
use serde_json::{json, Value};

use crate::status::ApiError;
use crate::validate::set_default;

/// The range cluster IPs come from (k3s's default).
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The range node ports come from.
pub const NODE_PORTS: (u16, u16) = (30000, 32767);

/// Serializes allocation and the create that stores it.
pub(crate) static ALLOCATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kubernetes' defaults for a Service.
pub(crate) fn defaults(obj: &mut Value) {
    let Some(spec) = obj["spec"].as_object_mut() else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let external_name = spec["type"] == "ExternalName";
    if !external_name {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer")) {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = spec.entry("sessionAffinityConfig").or_insert(json!({}));
        if cfg["clientIP"]["timeoutSeconds"].is_null() {
            cfg["clientIP"] = json!({"timeoutSeconds": 10800});
        }
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                set_default(pm, "protocol", json!("TCP"));
                let port = pm.get("port").cloned().unwrap_or(Value::Null);
                set_default(pm, "targetPort", port);
            }
        }
    }
    obj.as_object_mut()
        .expect("object")
        .entry("status")
        .or_insert(json!({"loadBalancer": {}}));
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (base, len) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - len);
    u32::from(ip) & mask == u32::from(base) & mask
}

/// Every cluster IP and node port the stored Services hold, but `except`'s (namespace/name).
async fn taken(
    store: &Arc<dyn Store>,
    except: Option<(&str, &str)>,
) -> Result<(HashSet<Ipv4Addr>, HashSet<u16>), ApiError> {
    let r = store
        .range(RangeRequest {
            prefix: registry::prefix("", "services", None),
            ..Default::default()
        })
        .await?;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in r.kvs.iter().filter_map(registry::decode) {
        let me = (
            s["metadata"]["namespace"].as_str().unwrap_or(""),
            s["metadata"]["name"].as_str().unwrap_or(""),
        );
        if Some(me) == except {
            continue;
        }
        if let Some(ip) = s["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok()) {
            ips.insert(ip);
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_u64() {
                ports.insert(n as u16);
            }
        }
    }
    Ok((ips, ports))
}

fn invalid(name: &str, causes: Vec<(String, String)>) -> ApiError {
    ApiError::invalid("Service", name, causes)
}

/// Gives a new Service its cluster IP and node ports (those not given), or checks those
/// given. Call with [`ALLOCATION`] held until the Service is stored.
pub(crate) async fn allocate(store: &Arc<dyn Store>, obj: &mut Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let (ips, mut ports) = taken(store, None).await?;
    let spec = obj["spec"].as_object_mut().expect("checked: spec");
    if spec["type"] != "ExternalName" {
        match spec.get("clusterIP").and_then(Value::as_str) {
            Some("None") => {
                spec.insert("clusterIPs".into(), json!(["None"]));
            }
            Some(s) if !s.is_empty() => {
                let ip: Ipv4Addr = s.parse().map_err(|_| {
                    invalid(
                        &name,
                        vec![(
                            "spec.clusterIP".into(),
                            format!("Invalid value: \"{s}\": must be a valid IP address"),
                        )],
                    )
                })?;
                let (base, len) = SERVICE_CIDR;
                if !in_cidr(ip) {
                    return Err(invalid(&name, vec![("spec.clusterIPs".into(), format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {base}/{len}"))]));
                }
                if ips.contains(&ip) {
                    return Err(invalid(&name, vec![("spec.clusterIPs".into(), format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"))]));
                }
                spec.insert("clusterIPs".into(), json!([s]));
            }
            _ => {
                let ip = free_ip(&ips, &name).ok_or_else(|| {
                    ApiError::internal("failed to allocate a service IP: the range is full")
                })?;
                spec.insert("clusterIP".into(), json!(ip.to_string()));
                spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            }
        }
    }
    take_node_ports(obj, &mut ports, &name)?;
    Ok(())
}

/// Takes the node ports `spec.ports` names (each must be free) and gives the others one when
/// the type has node ports; a type without them loses those given (an update to ClusterIP).
fn take_node_ports(obj: &mut Value, taken: &mut HashSet<u16>, name: &str) -> Result<(), ApiError> {
    let wants = matches!(
        obj["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    );
    let Some(Value::Array(list)) = obj["spec"].get_mut("ports") else {
        return Ok(());
    };
    for (i, p) in list.iter_mut().enumerate() {
        match p["nodePort"].as_u64() {
            Some(_) if !wants => {
                p.as_object_mut().expect("port").remove("nodePort");
            }
            Some(n) if !taken.insert(n as u16) => {
                return Err(invalid(
                    name,
                    vec![(
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {n}: provided port is already allocated"),
                    )],
                ));
            }
            Some(_) => {}
            None if wants => {
                let n = free_port(taken, name, i).ok_or_else(|| {
                    ApiError::internal("failed to allocate a node port: the range is full")
                })?;
                taken.insert(n);
                p["nodePort"] = json!(n);
            }
            None => {}
        }
    }
    Ok(())
}

/// A free address of the range, starting from one the name picks (so addresses spread).
fn free_ip(taken: &HashSet<Ipv4Addr>, name: &str) -> Option<Ipv4Addr> {
    let (base, len) = SERVICE_CIDR;
    let size = 1u32 << (32 - len);
    let h = corral_store::meta::fnv1a(name.bytes().chain(crate::objects::new_uid().bytes()));
    // .0 is the network, .1 is kept (Kubernetes gives it to `kubernetes`), the last is
    // broadcast.
    let usable = size - 3;
    (0..usable)
        .map(|i| Ipv4Addr::from(u32::from(base) + 2 + (h.wrapping_add(i) % usable)))
        .find(|ip| !taken.contains(ip))
}

fn free_port(taken: &HashSet<u16>, name: &str, i: usize) -> Option<u16> {
    let (lo, hi) = NODE_PORTS;
    let span = u32::from(hi - lo) + 1;
    let h = corral_store::meta::fnv1a(name.bytes().chain(crate::objects::new_uid().bytes()))
        .wrapping_add(i as u32);
    (0..span)
        .map(|k| lo + ((h.wrapping_add(k)) % span) as u16)
        .find(|p| !taken.contains(p))
}

/// A Service's own rules (on create and update).
pub(crate) fn check(v: &Value) -> Result<(), ApiError> {
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let spec = &v["spec"];
    let mut causes: Vec<(String, String)> = Vec::new();
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(("spec.type".into(), format!("Unsupported value: \"{ty}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"")));
    }
    if ty == "ExternalName" {
        match spec["externalName"].as_str().filter(|n| !n.is_empty()) {
            None => causes.push(("spec.externalName".into(), "Required value".into())),
            Some(n) if !crate::validate::is_dns_subdomain(n.strip_suffix('.').unwrap_or(n)) => {
                causes.push((
                    "spec.externalName".into(),
                    format!("Invalid value: \"{n}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
                ))
            }
            Some(_) => {}
        }
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && ty != "ExternalName" && !headless {
        causes.push(("spec.ports".into(), "Required value".into()));
    }
    let mut names = HashSet::new();
    let mut seen = HashSet::new();
    let (lo, hi) = NODE_PORTS;
    for (i, p) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let pname = p["name"].as_str().unwrap_or("");
        if ports.len() > 1 && pname.is_empty() {
            causes.push((format!("{at}.name"), "Required value".into()));
        } else if !pname.is_empty() && !names.insert(pname.to_string()) {
            causes.push((
                format!("{at}.name"),
                format!("Duplicate value: \"{pname}\""),
            ));
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push((
                format!("{at}.port"),
                format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
            ));
        }
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            causes.push((
                format!("{at}.protocol"),
                format!(
                    "Unsupported value: \"{proto}\": supported values: \"SCTP\", \"TCP\", \"UDP\""
                ),
            ));
        }
        if !seen.insert((port, proto.to_string())) {
            causes.push((
                at.clone(),
                format!("Duplicate value: {{\"port\": {port}, \"protocol\": \"{proto}\"}}"),
            ));
        }
        match &p["targetPort"] {
            Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => causes.push((
                format!("{at}.targetPort"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            )),
            Value::String(s) if s.is_empty() || s.len() > 15 => causes.push((
                format!("{at}.targetPort"),
                format!("Invalid value: \"{s}\": must be no more than 15 characters"),
            )),
            _ => {}
        }
        if let Some(n) = p["nodePort"].as_i64() {
            if ty == "ClusterIP" {
                causes.push((
                    format!("{at}.nodePort"),
                    "Forbidden: may not be used when `type` is 'ClusterIP'".into(),
                ));
            } else if !(i64::from(lo)..=i64::from(hi)).contains(&n) {
                causes.push((format!("{at}.nodePort"), format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}")));
            }
        }
    }
    if !matches!(
        spec["sessionAffinity"].as_str(),
        None | Some("None" | "ClientIP")
    ) {
        causes.push((
            "spec.sessionAffinity".into(),
            format!(
                "Unsupported value: {}: supported values: \"ClientIP\", \"None\"",
                spec["sessionAffinity"]
            ),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(name, causes))
    }
}

/// What an update keeps from the stored Service when the body leaves it out (cluster IPs,
/// node ports of the same port), and refuses to change (the cluster IP).
pub(crate) fn merge_update(old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
    let Some(spec) = new["spec"].as_object_mut() else {
        return Ok(());
    };
    for f in ["clusterIP", "clusterIPs"] {
        if spec.get(f).is_none_or(|v| v.is_null() || v == "") && !old["spec"][f].is_null() {
            spec.insert(f.into(), old["spec"][f].clone());
        }
    }
    if old["spec"]["clusterIP"] != spec["clusterIP"] && !old["spec"]["clusterIP"].is_null() {
        return Err(invalid(
            &name,
            vec![(
                "spec.clusterIPs[0]".into(),
                format!(
                    "Invalid value: {}: may not change once set",
                    spec["clusterIP"]
                ),
            )],
        ));
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let node_ports = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    if !node_ports {
        return Ok(());
    }
    if let Some(Value::Array(ps)) = spec.get_mut("ports") {
        for p in ps {
            if p["nodePort"].is_null() {
                if let Some(o) = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                {
                    if !o["nodePort"].is_null() {
                        p["nodePort"] = o["nodePort"].clone();
                    }
                }
            }
        }
    }
    Ok(())
}

/// Node ports an update adds: free and in range. Call with [`ALLOCATION`] held.
pub(crate) async fn check_update_ports(
    store: &Arc<dyn Store>,
    new: &mut Value,
) -> Result<(), ApiError> {
    let ns = new["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
    let (_, mut ports) = taken(store, Some((&ns, &name))).await?;
    take_node_ports(new, &mut ports, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ports: Value) -> Value {
        let mut v = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": ports}});
        defaults(&mut v);
        v
    }

    #[test]
    fn defaults_and_checks() {
        let v = svc(json!([{"port": 80}]));
        assert_eq!(v["spec"]["type"], "ClusterIP");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(v["spec"]["ports"][0]["protocol"], "TCP");
        check(&v).unwrap();
        let dup = svc(json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]));
        assert!(check(&dup).unwrap_err().message.contains("Duplicate value"));
        let unnamed = svc(json!([{"port": 80}, {"port": 81}]));
        assert!(check(&unnamed)
            .unwrap_err()
            .message
            .contains("spec.ports[0].name"));
        let mut np = svc(json!([{"port": 80, "nodePort": 80}]));
        np["spec"]["type"] = json!("NodePort");
        assert!(check(&np)
            .unwrap_err()
            .message
            .contains("The range of valid ports is 30000-32767"));
    }

    #[test]
    fn addresses_come_from_the_range_and_skip_taken_ones() {
        let mut taken = HashSet::new();
        let ip = free_ip(&taken, "web").unwrap();
        assert!(in_cidr(ip));
        assert_ne!(ip, Ipv4Addr::new(10, 43, 0, 0));
        taken.insert(ip);
        assert_ne!(free_ip(&taken, "web"), Some(ip));
        let p = free_port(&HashSet::new(), "web", 0).unwrap();
        assert!((30000..=32767).contains(&p));
    }

    #[test]
    fn the_cluster_ip_is_kept_and_may_not_change() {
        let old = json!({"spec": {"clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.9"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
        let mut new = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        merge_update(&old, &mut new).unwrap();
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.9");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30001);
        let mut changed = json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.43.0.10"}});
        assert!(merge_update(&old, &mut changed).is_err());
    }
}
