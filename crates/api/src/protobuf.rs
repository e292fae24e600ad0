//! Kubernetes' protobuf encoding, read for the kinds kubectl's generators send that way
//! (`kubectl create namespace|configmap|secret|serviceaccount` use client-go's typed
//! clients, which encode bodies as protobuf and do not fall back to JSON on a 415).
//!
//! The envelope: the magic `k8s\0`, then a `runtime.Unknown` (typeMeta = 1 {apiVersion = 1,
//! kind = 2}, raw = 2, contentEncoding = 3, contentType = 4) whose `raw` is the object. The
//! objects are read field by field into the JSON the rest of the server speaks; fields not
//! listed here are skipped (the body's unknown-field check then sees nothing of them).

use serde_json::{json, Map, Value};

use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\x00";

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("the protobuf body is malformed: {what}"))
}

/// One field of a message: its number and its value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, ApiError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or_else(|| bad("truncated varint"))?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint too long"))
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut i)?),
            1 => {
                i = i
                    .checked_add(8)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated fixed64"))?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(varint(b, &mut i)?).map_err(|_| bad("length"))?;
                let end = i
                    .checked_add(n)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated field"))?;
                let s = &b[i..end];
                i = end;
                Field::Bytes(s)
            }
            5 => {
                i = i
                    .checked_add(4)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| bad("truncated fixed32"))?;
                Field::Fixed
            }
            _ => return Err(bad("unknown wire type")),
        };
        out.push((num, f));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8"))
}

/// A `map<string, string>` (or `bytes` values, base64 as JSON has them) entry into `m`.
fn map_entry(b: &[u8], m: &mut Map<String, Value>, bytes_values: bool) -> Result<(), ApiError> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(s)) => k = text(s)?,
            (2, Field::Bytes(s)) if bytes_values => {
                use base64::Engine as _;
                v = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
            (2, Field::Bytes(s)) => v = json!(text(s)?),
            _ => {}
        }
    }
    m.insert(k, v);
    Ok(())
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(s)) => drop(m.insert("name".into(), json!(text(s)?))),
            (2, Field::Bytes(s)) => drop(m.insert("generateName".into(), json!(text(s)?))),
            (3, Field::Bytes(s)) => drop(m.insert("namespace".into(), json!(text(s)?))),
            (5, Field::Bytes(s)) => drop(m.insert("uid".into(), json!(text(s)?))),
            (6, Field::Bytes(s)) => drop(m.insert("resourceVersion".into(), json!(text(s)?))),
            (11, Field::Bytes(s)) => map_entry(s, &mut labels, false)?,
            (12, Field::Bytes(s)) => map_entry(s, &mut annotations, false)?,
            (14, Field::Bytes(s)) => finalizers.push(json!(text(s)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn name_ref(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (1, Field::Bytes(s)) = (n, f) {
            m.insert("name".into(), json!(text(s)?));
        }
    }
    Ok(Value::Object(m))
}

/// The object of `kind` encoded in `raw`.
fn object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ApiError> {
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let (mut data, mut other, mut list_a, mut list_b) =
        (Map::new(), Map::new(), Vec::new(), Vec::new());
    for (n, f) in fields(raw)? {
        match (kind, n, f) {
            (_, 1, Field::Bytes(s)) => obj["metadata"] = object_meta(s)?,
            ("Namespace", 2, Field::Bytes(s)) => {
                let fins: Vec<Value> = fields(s)?
                    .into_iter()
                    .filter_map(|(n, f)| match (n, f) {
                        (1, Field::Bytes(x)) => text(x).ok().map(Value::String),
                        _ => None,
                    })
                    .collect();
                obj["spec"] = json!({"finalizers": fins});
            }
            ("ConfigMap", 2, Field::Bytes(s)) => map_entry(s, &mut data, false)?,
            ("ConfigMap", 3, Field::Bytes(s)) => map_entry(s, &mut other, true)?,
            ("ConfigMap", 4, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            ("Secret", 2, Field::Bytes(s)) => map_entry(s, &mut data, true)?,
            ("Secret", 3, Field::Bytes(s)) => obj["type"] = json!(text(s)?),
            ("Secret", 4, Field::Bytes(s)) => map_entry(s, &mut other, false)?,
            ("Secret", 5, Field::Varint(v)) => obj["immutable"] = json!(v != 0),
            ("ServiceAccount", 2, Field::Bytes(s)) => list_a.push(name_ref(s)?),
            ("ServiceAccount", 3, Field::Bytes(s)) => list_b.push(name_ref(s)?),
            ("ServiceAccount", 4, Field::Varint(v)) => {
                obj["automountServiceAccountToken"] = json!(v != 0)
            }
            _ => {}
        }
    }
    let put = |obj: &mut Value, k: &str, m: Map<String, Value>| {
        if !m.is_empty() {
            obj[k] = Value::Object(m);
        }
    };
    match kind {
        "ConfigMap" => {
            put(&mut obj, "data", data);
            put(&mut obj, "binaryData", other);
        }
        "Secret" => {
            put(&mut obj, "data", data);
            put(&mut obj, "stringData", other);
        }
        "ServiceAccount" => {
            if !list_a.is_empty() {
                obj["secrets"] = Value::Array(list_a);
            }
            if !list_b.is_empty() {
                obj["imagePullSecrets"] = Value::Array(list_b);
            }
        }
        _ => {}
    }
    Ok(obj)
}

/// Decodes a protobuf request body to the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(s)) => api_version = text(s)?,
                        (2, Field::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = Some(r),
            (3, Field::Bytes(enc)) if !enc.is_empty() => {
                return Err(bad("content encodings are not supported"))
            }
            _ => {}
        }
    }
    let raw = raw.unwrap_or(&[]);
    match kind.as_str() {
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" => object(&api_version, &kind, raw),
        other => Err(ApiError::unsupported_media(format!(
            "protobuf bodies are read for Namespace, ConfigMap, Secret and ServiceAccount only, not {other}: send JSON (application/json)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, data: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3 | 2) as u8, data.len() as u8];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn a_configmap_as_kubectl_create_sends_it() {
        let meta = [
            field(1, b"cfg"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn hostile_bodies_are_400s() {
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\x00\x0a\xff").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\x00\x0a\x05\x0a").unwrap_err().code, 400);
        let tm = [field(1, b"v1"), field(2, b"Pod")].concat();
        assert_eq!(
            decode(&[MAGIC.to_vec(), field(1, &tm)].concat())
                .unwrap_err()
                .code,
            415
        );
    }
}
