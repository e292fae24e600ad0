//! Decoding and validation of objects as Kubernetes does it on a write: the body decodes as
//! its kind (typed, with k8s-openapi), unknown fields are found by comparing the body with
//! its typed round trip (reported, refused or dropped as `fieldValidation` says), names are
//! checked, defaults filled in, and fields that may not change are kept from changing.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};

use crate::resources::Resource;
use crate::status::ApiError;

/// What to do with fields the kind does not have (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the default).
    Warn,
    /// Refuse the request (400).
    Strict,
}

impl FieldValidation {
    /// From the query parameter.
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(o) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {o} (use Ignore, Warn or Strict)"
            ))),
        }
    }
}

pub(crate) fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

/// The body decoded as `r`'s kind and encoded again: only the fields the kind has.
fn typed(r: &Resource, v: &Value) -> Result<Value, String> {
    use k8s_openapi::api::{apps, coordination, core::v1 as core, discovery, node, storage};
    match r.kind {
        "Namespace" => roundtrip::<core::Namespace>(v),
        "Pod" => roundtrip::<core::Pod>(v),
        "ConfigMap" => roundtrip::<core::ConfigMap>(v),
        "Secret" => roundtrip::<core::Secret>(v),
        "Event" => roundtrip::<core::Event>(v),
        "ServiceAccount" => roundtrip::<core::ServiceAccount>(v),
        "Node" => roundtrip::<core::Node>(v),
        "PersistentVolumeClaim" => roundtrip::<core::PersistentVolumeClaim>(v),
        "PersistentVolume" => roundtrip::<core::PersistentVolume>(v),
        "Lease" => roundtrip::<coordination::v1::Lease>(v),
        "RuntimeClass" => roundtrip::<node::v1::RuntimeClass>(v),
        "StorageClass" => roundtrip::<storage::v1::StorageClass>(v),
        "Deployment" => roundtrip::<apps::v1::Deployment>(v),
        "ReplicaSet" => roundtrip::<apps::v1::ReplicaSet>(v),
        "ControllerRevision" => roundtrip::<apps::v1::ControllerRevision>(v),
        "Service" => roundtrip::<core::Service>(v),
        "Endpoints" => roundtrip::<core::Endpoints>(v),
        "EndpointSlice" => roundtrip::<discovery::v1::EndpointSlice>(v),
        "VirtualMachine"
        | "VirtualMachineSnapshot"
        | "VirtualMachineClone"
        | "VirtualMachineRestore" => crate::virtualmachines::typed(r.kind, v),
        _ => Ok(v.clone()),
    }
}

/// Paths (`.spec.foo`) present in `orig` but not in `typed`.
fn unknown_fields(orig: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    None if !va.is_null() => out.push(p),
                    None => {}
                    Some(vb) => unknown_fields(va, vb, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                unknown_fields(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes `body` as an object of `r`: the typed form, plus warnings for dropped fields.
/// `apiVersion` and `kind` are filled in when absent and must match when present.
pub fn decode(
    r: &Resource,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    };
    let mut obj = Value::Object(map.clone());
    let want_av = r.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None => obj["kind"] = json!(r.kind),
        Some(k) if k == r.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                r.kind,
                r.qualified()
            )))
        }
    }
    let t = typed(r, &obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            r.kind, r.version, r.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&obj, &t, "", &mut unknown);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{}\"", &u[1..]))
            .collect();
        match fv {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    r.kind,
                    r.version,
                    r.kind,
                    list.join(", ")
                )))
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    Ok((t, warnings))
}

/// Whether `s` is a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain (labels joined by dots, at most 253).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks an object's name for its kind; the cause as Kubernetes words it.
pub fn check_name(r: &Resource, name: &str) -> Result<(), ApiError> {
    let label_only = matches!(r.kind, "Namespace");
    let ok = if label_only {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let what = if label_only {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
    };
    Err(ApiError::invalid(
        r.kind,
        name,
        vec![(
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": {what}"),
        )],
    ))
}

/// Checks labels and annotations keys and values.
pub fn check_metadata(r: &Resource, name: &str, meta: &Map<String, Value>) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if let Some(Value::Object(labels)) = meta.get("labels") {
        for (k, v) in labels {
            if let Err(e) = label_key(k) {
                causes.push((
                    "metadata.labels".to_string(),
                    format!("Invalid value: \"{k}\": {e}"),
                ));
            }
            let v = v.as_str().unwrap_or("");
            if let Err(e) = label_value(v) {
                causes.push((
                    "metadata.labels".to_string(),
                    format!("Invalid value: \"{v}\": {e}"),
                ));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

fn label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()))
}

fn label_key(k: &str) -> Result<(), &'static str> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err("prefix part must be a lowercase RFC 1123 subdomain");
        }
    }
    if name.is_empty() || !label_name(name) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters");
    }
    Ok(())
}

fn label_value(v: &str) -> Result<(), &'static str> {
    if label_name(v) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters")
    }
}

fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

/// Sets `k` to `v` unless it has a value (Kubernetes' defaulting).
pub(crate) fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if !m.contains_key(k) || m[k].is_null() {
        m.insert(k.to_string(), v);
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(
        m,
        "imagePullPolicy",
        json!(if image_tag_is_latest(&image) {
            "Always"
        } else {
            "IfNotPresent"
        }),
    );
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                set_default(pm, "protocol", json!("TCP"));
            }
        }
    }
}

/// Fills in what Kubernetes defaults on a create, per kind.
pub fn defaults(r: &Resource, obj: &mut Value) {
    match r.kind {
        "Pod" => {
            if let Some(spec) = obj["spec"].as_object_mut() {
                pod_spec_defaults(spec);
            }
            let qos = qos_class(&obj["spec"]);
            let st = obj
                .as_object_mut()
                .expect("object")
                .entry("status")
                .or_insert(json!({}));
            if let Some(st) = st.as_object_mut() {
                set_default(st, "phase", json!("Pending"));
                set_default(st, "qosClass", json!(qos));
            }
        }
        "Namespace" => {
            let spec = obj
                .as_object_mut()
                .expect("object")
                .entry("spec")
                .or_insert(json!({}));
            if let Some(spec) = spec.as_object_mut() {
                set_default(spec, "finalizers", json!(["kubernetes"]));
            }
            obj["status"] = json!({"phase": "Active"});
            let name = obj["metadata"]["name"].clone();
            let labels = obj["metadata"]
                .as_object_mut()
                .expect("metadata")
                .entry("labels")
                .or_insert(json!({}));
            labels["kubernetes.io/metadata.name"] = name;
        }
        "Secret" => {
            let m = obj.as_object_mut().expect("object");
            if m.get("type").and_then(Value::as_str) == Some("") {
                m.remove("type");
            }
            set_default(m, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                use base64::Engine as _;
                let data = m.entry("data").or_insert(json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or("");
                    data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
        }
        "PersistentVolumeClaim" | "PersistentVolume" => {
            if let Some(spec) = obj["spec"].as_object_mut() {
                set_default(spec, "volumeMode", json!("Filesystem"));
                if r.kind == "PersistentVolume" {
                    set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                }
            }
            let st = obj
                .as_object_mut()
                .expect("object")
                .entry("status")
                .or_insert(json!({}));
            if let Some(st) = st.as_object_mut() {
                set_default(st, "phase", json!("Pending"));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            crate::workloads::defaults(r.kind, obj)
        }
        "Job" | "CronJob" => crate::batch::defaults(r.kind, obj),
        "HorizontalPodAutoscaler" => crate::autoscaling::defaults(obj),
        "VirtualMachine" => crate::virtualmachines::defaults(obj),
        "Service" => crate::services::defaults(obj),
        _ => {}
    }
}

/// What Kubernetes defaults in a pod spec (a pod's, or a template's).
pub(crate) fn pod_spec_defaults(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "serviceAccountName", json!("default"));
    let sa = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", sa);
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(
        spec,
        "tolerations",
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]),
    );
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

fn has_resource(c: &Value, which: &str, res: &str) -> bool {
    c["resources"][which].get(res).is_some()
}

/// The QoS class of a pod spec by Kubernetes' rules.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut cs: Vec<&Value> = Vec::new();
    for list in ["containers", "initContainers"] {
        if let Some(a) = spec[list].as_array() {
            cs.extend(a.iter());
        }
    }
    let any = cs.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|r| has_resource(c, "requests", r) || has_resource(c, "limits", r))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = cs.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let lim = &c["resources"]["limits"][*r];
            let req = &c["resources"]["requests"][*r];
            !lim.is_null() && (req.is_null() || req == lim)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Refuses an update that changes what may not change after create: a pod's spec except
/// images, activeDeadlineSeconds and tolerations added; a PVC's spec except resources;
/// immutable ConfigMaps and Secrets.
pub fn check_update(r: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    match r.kind {
        "Pod" => {
            let strip = |spec: &Value| {
                let mut s = spec.clone();
                for list in ["containers", "initContainers"] {
                    if let Some(Value::Array(cs)) = s.get_mut(list) {
                        for c in cs {
                            if let Some(m) = c.as_object_mut() {
                                m.remove("image");
                            }
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                    // nodeName is set once, by binding.
                    if old["spec"]["nodeName"].is_null() {
                        m.remove("nodeName");
                    }
                }
                s
            };
            let mut o = strip(&old["spec"]);
            let n = strip(&new["spec"]);
            if old["spec"]["nodeName"].is_null() {
                if let Some(m) = o.as_object_mut() {
                    m.remove("nodeName");
                }
            }
            if o != n {
                return Err(ApiError::invalid(
                    "Pod",
                    name,
                    vec![("spec".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)".into())],
                ));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            crate::workloads::check_update(r, old, new)?
        }
        "Job" => crate::batch::check_update(r, old, new)?,
        "ConfigMap" | "Secret" if old["immutable"] == json!(true) => {
            let same = ["data", "binaryData", "stringData", "immutable"]
                .iter()
                .all(|f| old[*f] == new[*f]);
            if !same {
                return Err(ApiError::invalid(
                    r.kind,
                    name,
                    vec![(
                        "data".into(),
                        "Forbidden: field is immutable when `immutable` is set".into(),
                    )],
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn strict_names_unknown_fields_and_warn_drops_them() {
        let pods = find("", "v1", "pods").unwrap();
        let body = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}], "extra": true}});
        let e = decode(pods, &body, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("unknown field \"spec.containers[0].bogus\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("unknown field \"spec.extra\""));
        let (t, w) = decode(pods, &body, FieldValidation::Warn).unwrap();
        assert_eq!(w.len(), 2);
        assert!(t["spec"].get("extra").is_none());
        assert_eq!(t["kind"], "Pod");
    }

    #[test]
    fn wrong_kind_and_type_errors_are_400() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            decode(pods, &json!({"kind": "Secret"}), FieldValidation::Strict)
                .unwrap_err()
                .code,
            400
        );
        let e = decode(
            pods,
            &json!({"spec": {"containers": 3}}),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert_eq!(
            check_name(find("", "v1", "namespaces").unwrap(), "x.y")
                .unwrap_err()
                .code,
            422
        );
    }

    #[test]
    fn pod_defaults_and_qos() {
        let pods = find("", "v1", "pods").unwrap();
        let mut p = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "b:1", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        defaults(pods, &mut p);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["status"]["qosClass"], "Burstable");
        assert_eq!(p["status"]["phase"], "Pending");
    }

    #[test]
    fn pod_spec_is_immutable_but_image() {
        let pods = find("", "v1", "pods").unwrap();
        let old = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("y");
        check_update(pods, &old, &new).unwrap();
        new["spec"]["containers"][0]["command"] = json!(["sh"]);
        assert_eq!(check_update(pods, &old, &new).unwrap_err().code, 422);
    }
}
