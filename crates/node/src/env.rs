//! A container's environment as the kubelet makes it (`kubelet_pods.go`,
//! `makeEnvironmentVariables`): `envFrom` sources first (ConfigMaps and Secrets, each key
//! with the source's prefix), then `env` entries, which override; `value`s expand `$(VAR)`
//! from the variables defined before them (`$$` escapes); `valueFrom` reads a ConfigMap or
//! Secret key, a field of the pod (`fieldRef`) or a resource of a container
//! (`resourceFieldRef`).
//!
//! The ConfigMaps and Secrets are fetched from the store first ([`referenced`] says which)
//! and passed in, so the resolution itself is pure. A missing object or key that is not
//! `optional` is the container's `CreateContainerConfigError`, with the kubelet's message.
//! Service links (`FOO_SERVICE_HOST`) are not made.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};

use crate::quantity;

/// ConfigMaps and Secrets of the pod's namespace by name; `None`: not in the store.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// ConfigMaps' `data` and `binaryData`.
    pub configmaps: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    /// Secrets' `data` (decoded) and `stringData`.
    pub secrets: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    /// What each PersistentVolumeClaim mounts.
    pub claims: HashMap<String, crate::claims::ClaimSource>,
}

/// What the pod's fields resolve to beyond its object.
#[derive(Debug, Clone, Default)]
pub struct FieldContext {
    /// The pod's address, once its sandbox is on the network.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: String,
    /// The node's allocatable CPU cores (a `resourceFieldRef` to an unset limit).
    pub node_cpus: f64,
    /// The node's allocatable memory in bytes.
    pub node_memory: u64,
}

/// The ConfigMaps and Secrets a container's environment reads: (configmaps, secrets).
pub fn referenced(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.insert(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// The container's environment, `NAME=value` in order of first definition.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    src: &Sources,
    ctx: &FieldContext,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    let mut vals: HashMap<String, String> = HashMap::new();
    fn set(k: String, v: String, order: &mut Vec<String>, vals: &mut HashMap<String, String>) {
        if !vals.contains_key(&k) {
            order.push(k.clone());
        }
        vals.insert(k, v);
    }
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &f.config_map_ref {
            match src.configmaps.get(&r.name).cloned().flatten() {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &f.secret_ref {
            match src.secrets.get(&r.name).cloned().flatten() {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if name.is_empty() || name.contains('=') {
                continue;
            }
            set(
                name,
                String::from_utf8_lossy(&v).into_owned(),
                &mut order,
                &mut vals,
            );
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            let expanded = expand(v, &|n| vals.get(n).cloned());
            set(e.name.clone(), expanded, &mut order, &mut vals);
            continue;
        }
        let Some(vf) = &e.value_from else {
            set(e.name.clone(), String::new(), &mut order, &mut vals);
            continue;
        };
        let value = if let Some(r) = &vf.config_map_key_ref {
            match src.configmaps.get(&r.name).cloned().flatten() {
                None if r.optional == Some(true) => continue,
                None => return Err(format!("configmap \"{}\" not found", r.name)),
                Some(d) => match d.get(&r.key) {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
            }
        } else if let Some(r) = &vf.secret_key_ref {
            match src.secrets.get(&r.name).cloned().flatten() {
                None if r.optional == Some(true) => continue,
                None => return Err(format!("secret \"{}\" not found", r.name)),
                Some(d) => match d.get(&r.key) {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        ))
                    }
                },
            }
        } else if let Some(f) = &vf.field_ref {
            field_value(pod, f, ctx)?
        } else if let Some(r) = &vf.resource_field_ref {
            resource_value(pod, Some(&c.name), r, ctx)?
        } else {
            return Err(format!(
                "env {}: valueFrom names no source (configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef)",
                e.name
            ));
        };
        set(e.name.clone(), value, &mut order, &mut vals);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vals.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$(NAME)` is
/// replaced when `lookup` knows NAME and kept as written otherwise; `$$` is one `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push_str(&input[lit..i]);
                    out.push('$');
                    i += 2;
                    lit = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + close];
                        out.push_str(&input[lit..i]);
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        lit = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[lit..]);
    out
}

/// A `fieldRef`'s value: `metadata.name`, `metadata.namespace`, `metadata.uid`,
/// `metadata.labels['k']`, `metadata.annotations['k']`, `metadata.labels`,
/// `metadata.annotations`, `spec.nodeName`, `spec.serviceAccountName`, `status.podIP(s)`,
/// `status.hostIP(s)`.
pub fn field_value(
    pod: &Pod,
    f: &ObjectFieldSelector,
    ctx: &FieldContext,
) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let path = f.field_path.as_str();
    let map_entry = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let all = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path
            .strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')?;
        Some(rest.trim_matches(|c| c == '\'' || c == '"').to_owned())
    };
    if let Some(k) = subscript("metadata.labels") {
        return Ok(map_entry(&m.labels, &k));
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Ok(map_entry(&m.annotations, &k));
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(&m.labels),
        "metadata.annotations" => all(&m.annotations),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .service_account_name
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A `resourceFieldRef`'s value: a container's CPU (in whole `divisor`s, rounded up) or
/// memory limit or request; an unset limit is the node's allocatable amount.
pub fn resource_value(
    pod: &Pod,
    this: Option<&str>,
    r: &ResourceFieldSelector,
    ctx: &FieldContext,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = r.container_name.as_deref().or(this).unwrap_or("");
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: no container named {name:?}"))?;
    let res = c.resources.clone().unwrap_or_default();
    let (kind, which) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {}", r.resource))?;
    let map = match kind {
        "limits" => res.limits.unwrap_or_default(),
        "requests" => res.requests.unwrap_or_default(),
        _ => return Err(format!("unsupported container resource: {}", r.resource)),
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| quantity::parse(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let value = match (which, map.get(which)) {
        (_, Some(q)) => quantity::parse(&q.0)
            .ok_or_else(|| format!("{}: {:?} is not a quantity", r.resource, q.0))?,
        ("cpu", None) if kind == "limits" => ctx.node_cpus,
        ("memory", None) if kind == "limits" => ctx.node_memory as f64,
        ("cpu" | "memory" | "ephemeral-storage", None) => 0.0,
        _ => return Err(format!("unsupported container resource: {}", r.resource)),
    };
    Ok(format!(
        "{}",
        (value / divisor - 1e-9).ceil().max(0.0) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "REF", "value": "$(PLAIN)-$(NOPE)-$$(PLAIN)"},
                    {"name": "CM_a", "value": "overridden"},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz", "optional": true}}}
                ]
            }]}
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.configmaps.insert(
            "cm".into(),
            Some(
                [("a", "1"), ("b", "2")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        );
        s.secrets.insert(
            "s".into(),
            Some([("pw".to_string(), b"hunter2".to_vec())].into()),
        );
        s
    }

    fn ctx() -> FieldContext {
        FieldContext {
            pod_ip: Some("10.1.0.5".into()),
            host_ip: "192.168.1.2".into(),
            node_cpus: 2.0,
            node_memory: 1 << 30,
        }
    }

    #[test]
    fn env_resolves_every_source_kind() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env: BTreeMap<String, String> = resolve(&p, c, &sources(), &ctx())
            .unwrap()
            .into_iter()
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("CM_a"), Some("overridden"), "env overrides envFrom");
        assert_eq!(get("CM_b"), Some("2"));
        assert_eq!(get("PLAIN"), Some("x"));
        assert_eq!(get("REF"), Some("x-$(NOPE)-$(PLAIN)"));
        assert_eq!(get("FROM_CM"), Some("2"));
        assert_eq!(get("FROM_SECRET"), Some("hunter2"));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("NS"), Some("prod"));
        assert_eq!(get("UID"), Some("u-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("SA"), Some("default"));
        assert_eq!(get("IP"), Some("10.1.0.5"));
        assert_eq!(get("HOST"), Some("192.168.1.2"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("1"), "CPU rounds up to whole cores");
        assert_eq!(get("OPT"), None, "an optional missing key is left out");
        let order: Vec<String> = resolve(&p, c, &sources(), &ctx())
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(&order[..3], ["CM_a", "CM_b", "PLAIN"]);
    }

    #[test]
    fn missing_keys_and_objects_are_config_errors() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut s = sources();
        s.secrets.insert("s".into(), Some(BTreeMap::new()));
        assert_eq!(
            resolve(&p, c, &s, &ctx()).unwrap_err(),
            "couldn't find key pw in Secret prod/s"
        );
        s.configmaps.insert("cm".into(), None);
        assert_eq!(
            resolve(&p, c, &s, &ctx()).unwrap_err(),
            "configmap \"cm\" not found"
        );
        let (cms, secrets) = referenced(c);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cm"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s"]);
    }

    #[test]
    fn expansion_matches_kubernetes() {
        let vars: HashMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        let look = |n: &str| vars.get(n).map(|v| v.to_string());
        assert_eq!(expand("$(A)$(B)", &look), "1two");
        assert_eq!(expand("$$(A)", &look), "$(A)");
        assert_eq!(expand("$(C)", &look), "$(C)");
        assert_eq!(expand("a$b$", &look), "a$b$");
        assert_eq!(expand("$(A", &look), "$(A");
        assert_eq!(expand("echo $(A) $$$(B)", &look), "echo 1 $two");
    }
}
