//! Kubernetes' protobuf encoding of request bodies, read into the JSON the rest of the server
//! speaks.
//!
//! kubectl's generators (`kubectl create namespace|configmap|secret|serviceaccount|job|
//! cronjob|deployment|service`, and `kubectl create job --from=cronjob/X`) go through
//! client-go's typed clients, which send `application/vnd.kubernetes.protobuf` and do not fall
//! back to JSON on a 415.
//!
//! The envelope: the magic `k8s\0`, then a `runtime.Unknown` (typeMeta = 1 {apiVersion = 1,
//! kind = 2}, raw = 2, contentEncoding = 3, contentType = 4) whose `raw` is the object,
//! without its apiVersion and kind. The object is read by a static table of message
//! descriptors (`schema.rs`): per message, field number to JSON name, type and Go shape.
//! Numbers are those of Kubernetes' `generated.proto` files (k8s.io/api `core/v1`,
//! `batch/v1`, `apps/v1`; k8s.io/apimachinery `meta/v1`, `util/intstr`, `api/resource`).
//! The Go shape matters because gogo-protobuf, as Kubernetes uses it, writes a value field
//! (`string`, `int32`, `bool`, an embedded struct) even when it is zero, where JSON's
//! `omitempty` drops it: a zero value field is read as unset and left out. A pointer field is
//! written only when set, so its zero (`replicas: 0`, `suspend: false`, `securityContext: {}`)
//! is kept.
//!
//! Read: v1 Namespace, ConfigMap, Secret, ServiceAccount and Service; batch/v1 Job and
//! CronJob; apps/v1 Deployment; policy/v1 PodDisruptionBudget; autoscaling/v2
//! HorizontalPodAutoscaler (Resource and ContainerResource metrics) — with ObjectMeta, LabelSelector, the pod template (PodSpec,
//! Container and what it holds: ports, env and envFrom, resources, volume mounts, probes,
//! lifecycle, security contexts; volumes of kind emptyDir, configMap, secret,
//! persistentVolumeClaim and hostPath; tolerations) and the kinds' specs. Any other kind is a
//! 415.
//!
//! No data is dropped silently: a field number that a message's table does not list (say
//! PodSpec's `affinity`, or a volume of kind `nfs`) makes the body a 415 that names the
//! message and the number and asks for JSON — unless its value is zero (empty bytes, varint
//! 0), which is how Go writes an unset value field. A top-level `status` is read only when
//! every field in it is zero (what Go writes for an object with no status) and is then left
//! out.
//!
//! The body is hostile input: truncated fields, unknown wire types, strings that are not
//! UTF-8, messages nested more than 32 deep and times outside years 1-9999 are 400s;
//! nothing panics.

use serde_json::{Map, Value};

use crate::status::ApiError;

mod schema;

use schema::KINDS;

const MAGIC: &[u8] = b"k8s\x00";

/// How deep messages may nest. The deepest path in the table (CronJob → spec → jobTemplate →
/// spec → template → spec → containers → lifecycle → postStart → httpGet → port) is 10.
const MAX_DEPTH: usize = 32;

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf body is malformed: {what}"))
}

/// The 415 for a field corral does not read, so that no data is dropped without a word.
fn unread(message: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::unsupported_media(format!(
        "the protobuf body's {message} {what} is not read by corral: send JSON (application/json), e.g. kubectl apply"
    ))
}

/// The value of one field on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// fixed64 or fixed32; no Kubernetes message in the table uses them.
    Fixed(u64),
}

impl Wire<'_> {
    /// Whether this is what Go writes for an unset value field.
    fn is_zero(&self) -> bool {
        match self {
            Wire::Varint(v) | Wire::Fixed(v) => *v == 0,
            Wire::Bytes(b) => b.is_empty(),
        }
    }
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

/// `n` bytes of `b` from `*i`, moving `*i` past them.
fn take<'a>(b: &'a [u8], i: &mut usize, n: usize, what: &str) -> Result<&'a [u8], ApiError> {
    let end = i
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| bad(format!("truncated {what}")))?;
    let s = &b[*i..end];
    *i = end;
    Ok(s)
}

/// The fields of a message, in the order they were written.
fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let num = key >> 3;
        if num == 0 {
            return Err(bad("field number 0"));
        }
        let w = match key & 7 {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 => {
                let s = take(b, &mut i, 8, "fixed64")?;
                Wire::Fixed(s.iter().rev().fold(0, |a, x| a << 8 | u64::from(*x)))
            }
            2 => {
                let n = usize::try_from(varint(b, &mut i)?).map_err(|_| bad("length"))?;
                Wire::Bytes(take(b, &mut i, n, "field")?)
            }
            5 => {
                let s = take(b, &mut i, 4, "fixed32")?;
                Wire::Fixed(s.iter().rev().fold(0, |a, x| a << 8 | u64::from(*x)))
            }
            _ => return Err(bad("unknown wire type")),
        };
        out.push((num, w));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| bad("a string is not UTF-8"))
}

/// What a field holds, and the JSON it becomes.
#[derive(Clone, Copy)]
enum Ty {
    /// `string`, UTF-8.
    Str,
    /// A varint integer (`int32`, `int64`), as a JSON number. Go writes a negative `int32`
    /// sign-extended to 64 bits, so reading every varint as `i64` is right for both.
    Int,
    Bool,
    /// `metav1.Time` (seconds = 1, nanos = 2), as RFC 3339 in UTC to the second. Kubernetes
    /// itself drops the nanos (`time_proto.go`); so does corral.
    Time,
    /// `resource.Quantity`: a message whose field 1 is the quantity's string.
    Quantity,
    /// `intstr.IntOrString` (type = 1: 0 int, 1 string; intVal = 2; strVal = 3), as a JSON
    /// number or string.
    IntOrString,
    /// A nested message, as a JSON object.
    Msg(&'static Message),
    /// A Go struct embedded without a JSON name (`VolumeSource` in `Volume`,
    /// `LocalObjectReference` in the key selectors): its fields are the enclosing object's.
    Inline(&'static Message),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, base64 as JSON has `[]byte`.
    MapBytes,
    /// `map<string, resource.Quantity>`.
    MapQuantity,
    /// A top-level kind's `status`: read only when every field in it is zero, then left out.
    EmptyStatus,
}

/// The Go shape of a field, which says what a zero value means.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// A Go value: always written, so zero means unset and is left out.
    Value,
    /// A Go pointer: written only when set, so a zero value is kept.
    Ptr,
    /// A Go slice or map: one wire field per element or entry.
    Repeated,
}

/// One field of a message descriptor.
struct Field {
    num: u64,
    json: &'static str,
    ty: Ty,
    shape: Shape,
}

/// A message descriptor: the fields corral reads, by Kubernetes' field numbers.
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

impl Message {
    fn field(&self, num: u64) -> Option<&Field> {
        self.fields.iter().find(|f| f.num == num)
    }
}

const fn val(num: u64, json: &'static str, ty: Ty) -> Field {
    Field {
        num,
        json,
        ty,
        shape: Shape::Value,
    }
}

const fn ptr(num: u64, json: &'static str, ty: Ty) -> Field {
    Field {
        num,
        json,
        ty,
        shape: Shape::Ptr,
    }
}

const fn rep(num: u64, json: &'static str, ty: Ty) -> Field {
    Field {
        num,
        json,
        ty,
        shape: Shape::Repeated,
    }
}

/// A message's JSON object from its bytes, `depth` messages down from the object.
fn message(desc: &Message, b: &[u8], depth: usize) -> Result<Map<String, Value>, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!("messages nest deeper than {MAX_DEPTH}")));
    }
    let mut out = Map::new();
    for (num, w) in fields(b)? {
        let Some(f) = desc.field(num) else {
            if w.is_zero() {
                continue;
            }
            return Err(unread(desc.name, format_args!("field {num}")));
        };
        match (f.ty, f.shape, w) {
            (Ty::EmptyStatus, _, w) => {
                let all_zero = match w {
                    Wire::Bytes(s) => fields(s)?.iter().all(|(_, w)| w.is_zero()),
                    w => w.is_zero(),
                };
                if !all_zero {
                    return Err(unread(desc.name, f.json));
                }
            }
            (Ty::Inline(m), _, Wire::Bytes(s)) => out.extend(message(m, s, depth + 1)?),
            (Ty::MapStr | Ty::MapBytes | Ty::MapQuantity, _, Wire::Bytes(s)) => {
                let (k, v) = map_entry(desc, f, s, depth + 1)?;
                let m = out
                    .entry(f.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = m {
                    m.insert(k, v);
                }
            }
            (Ty::Int, Shape::Repeated, Wire::Bytes(s)) => {
                // A packed `repeated int64`: gogo writes them unpacked, but both are valid.
                let mut i = 0;
                while i < s.len() {
                    let v = varint(s, &mut i)?;
                    push(&mut out, f.json, Value::from(v as i64));
                }
            }
            (_, Shape::Repeated, w) => {
                if let Some(v) = single(desc, f, w, depth)? {
                    push(&mut out, f.json, v);
                }
            }
            // Protobuf's rule for a field written twice: the last one counts.
            (_, shape, w) => match single(desc, f, w, depth)? {
                Some(v) if shape == Shape::Ptr || !is_unset(f.ty, &v) => {
                    out.insert(f.json.to_string(), v);
                }
                _ => {
                    out.remove(f.json);
                }
            },
        }
    }
    Ok(out)
}

fn push(out: &mut Map<String, Value>, key: &str, v: Value) {
    let a = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = a {
        a.push(v);
    }
}

/// Whether `v` is the zero of a Go value field of type `ty`: what `omitempty` would drop
/// (or, for structs, what Kubernetes' defaulting treats as unset).
fn is_unset(ty: Ty, v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty() || (matches!(ty, Ty::Quantity) && s == "0"),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
    }
}

/// One value of field `f` of `desc`; `None` for the zero `Time`, which is no value at all.
fn single(desc: &Message, f: &Field, w: Wire<'_>, depth: usize) -> Result<Option<Value>, ApiError> {
    let v = match (f.ty, w) {
        (Ty::Str, Wire::Bytes(s)) => Value::String(text(s)?),
        (Ty::Int, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Ty::Time, Wire::Bytes(s)) => return time(s, depth + 1),
        (Ty::Quantity, Wire::Bytes(s)) => quantity(s, depth + 1)?,
        (Ty::IntOrString, Wire::Bytes(s)) => int_or_string(s, depth + 1)?,
        (Ty::Msg(m), Wire::Bytes(s)) => Value::Object(message(m, s, depth + 1)?),
        _ => {
            return Err(bad(format!(
                "{}'s field {} ({}) has the wrong wire type",
                desc.name, f.num, f.json
            )))
        }
    };
    Ok(Some(v))
}

/// A map entry (key = 1, value = 2) of field `f` of `desc`.
fn map_entry(
    desc: &Message,
    f: &Field,
    b: &[u8],
    depth: usize,
) -> Result<(String, Value), ApiError> {
    use base64::Engine as _;
    let mut k = String::new();
    let mut v = match f.ty {
        Ty::MapQuantity => Value::String("0".into()),
        _ => Value::String(String::new()),
    };
    for (num, w) in fields(b)? {
        match (num, f.ty, w) {
            (1, _, Wire::Bytes(s)) => k = text(s)?,
            (2, Ty::MapStr, Wire::Bytes(s)) => v = Value::String(text(s)?),
            (2, Ty::MapBytes, Wire::Bytes(s)) => {
                v = Value::String(base64::engine::general_purpose::STANDARD.encode(s))
            }
            (2, Ty::MapQuantity, Wire::Bytes(s)) => v = quantity(s, depth + 1)?,
            (1 | 2, _, _) => {
                return Err(bad(format!(
                    "an entry of {}'s {} has the wrong wire type",
                    desc.name, f.json
                )))
            }
            (n, _, w) if !w.is_zero() => {
                return Err(unread(
                    desc.name,
                    format_args!("{} entry's field {n}", f.json),
                ))
            }
            _ => {}
        }
    }
    Ok((k, v))
}

static QUANTITY: Message = Message {
    name: "Quantity",
    fields: &[val(1, "string", Ty::Str)],
};

fn quantity(b: &[u8], depth: usize) -> Result<Value, ApiError> {
    let mut m = message(&QUANTITY, b, depth)?;
    Ok(m.remove("string")
        .unwrap_or_else(|| Value::String("0".into())))
}

static INT_OR_STRING: Message = Message {
    name: "IntOrString",
    fields: &[
        val(1, "type", Ty::Int),
        val(2, "intVal", Ty::Int),
        val(3, "strVal", Ty::Str),
    ],
};

fn int_or_string(b: &[u8], depth: usize) -> Result<Value, ApiError> {
    let mut m = message(&INT_OR_STRING, b, depth)?;
    Ok(match m.get("type").and_then(Value::as_i64) {
        None => m.remove("intVal").unwrap_or_else(|| Value::from(0)),
        Some(1) => m
            .remove("strVal")
            .unwrap_or_else(|| Value::String(String::new())),
        Some(t) => return Err(bad(format!("IntOrString of type {t}"))),
    })
}

static TIME: Message = Message {
    name: "Time",
    fields: &[val(1, "seconds", Ty::Int), val(2, "nanos", Ty::Int)],
};

/// The earliest and latest seconds a `Time` may hold: 0001-01-01 and 9999-12-31T23:59:59.
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A `metav1.Time`; `None` for the zero time, which Go writes as no bytes at all.
fn time(b: &[u8], depth: usize) -> Result<Option<Value>, ApiError> {
    if b.is_empty() {
        return Ok(None);
    }
    let m = message(&TIME, b, depth)?;
    let secs = m.get("seconds").and_then(Value::as_i64).unwrap_or(0);
    if !TIME_RANGE.contains(&secs) {
        return Err(bad(format!("a time of {secs} seconds is out of range")));
    }
    // `meta::rfc3339` takes a `SystemTime` and clamps times before 1970; Kubernetes' range
    // starts at year 1, so the date is worked out here.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = corral_store::meta::civil_from_days(days);
    Ok(Some(Value::String(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))))
}

/// The `runtime.Unknown` envelope: apiVersion, kind and the raw object.
fn envelope(body: &[u8]) -> Result<(String, String, &[u8]), ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("it does not start with the k8s magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Wire::Bytes(s)) => api_version = text(s)?,
                        (2, Wire::Bytes(s)) => kind = text(s)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            (3, Wire::Bytes(enc)) if !enc.is_empty() => {
                return Err(bad("content encodings are not supported"))
            }
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// Decodes a protobuf request body to the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let (api_version, kind, raw) = envelope(body)?;
    let Some((want, _, desc)) = KINDS.iter().find(|(_, k, _)| *k == kind) else {
        let read: Vec<&str> = KINDS.iter().map(|(_, k, _)| *k).collect();
        return Err(ApiError::unsupported_media(format!(
            "protobuf bodies are read for {} only, not {kind}: send JSON (application/json)",
            read.join(", ")
        )));
    };
    if api_version != *want {
        return Err(ApiError::unsupported_media(format!(
            "protobuf bodies are read for {want} {kind}, not {api_version}: send JSON (application/json)"
        )));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    obj.extend(message(desc, raw, 0)?);
    obj.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A varint's bytes.
    fn vint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// A length-delimited field.
    fn ld(n: u64, data: &[u8]) -> Vec<u8> {
        [vint(n << 3 | 2), vint(data.len() as u64), data.to_vec()].concat()
    }

    /// A varint field.
    fn vf(n: u64, v: u64) -> Vec<u8> {
        [vint(n << 3), vint(v)].concat()
    }

    fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            ld(1, &tm),
            ld(2, raw),
            ld(3, b""),
            ld(4, b""),
        ]
        .concat()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// ObjectMeta as Go writes it: every value field, zero unless given in `set`.
    fn go_meta(name: &str, set: &[Vec<u8>]) -> Vec<u8> {
        let mut m = [
            ld(1, name.as_bytes()),
            ld(2, b""),
            ld(3, b""),
            ld(4, b""),
            ld(5, b""),
            ld(6, b""),
            vf(7, 0),
            ld(8, b""),
        ]
        .concat();
        m.extend(set.concat());
        m
    }

    /// A Container as Go writes it with name, image, command and `set`.
    fn go_container(name: &str, image: &str, command: &[&str], set: &[Vec<u8>]) -> Vec<u8> {
        let mut c = [ld(1, name.as_bytes()), ld(2, image.as_bytes())].concat();
        for a in command {
            c.extend(ld(3, a.as_bytes()));
        }
        for f in [5, 8, 13, 14, 20] {
            c.extend(ld(f, b""));
        }
        for f in [16, 17, 18] {
            c.extend(vf(f, 0));
        }
        c.extend(set.concat());
        c
    }

    /// A PodSpec as Go writes it with `containers`, `restart_policy` and `set`.
    fn go_pod_spec(containers: &[Vec<u8>], restart_policy: &str, set: &[Vec<u8>]) -> Vec<u8> {
        let mut p: Vec<u8> = containers.iter().flat_map(|c| ld(2, c)).collect();
        p.extend(ld(3, restart_policy.as_bytes()));
        for f in [6, 8, 9, 10, 16, 17, 19, 24] {
            p.extend(ld(f, b""));
        }
        for f in [11, 12, 13] {
            p.extend(vf(f, 0));
        }
        p.extend(set.concat());
        p
    }

    fn pod_template(spec: &[u8]) -> Vec<u8> {
        [ld(1, &go_meta("", &[])), ld(2, spec)].concat()
    }

    /// A JobStatus as Go writes an unset one.
    fn go_job_status() -> Vec<u8> {
        [vf(4, 0), vf(5, 0), vf(6, 0), ld(7, b"")].concat()
    }

    fn echo_job_spec() -> Vec<u8> {
        let c = go_container("x", "busybox", &["echo", "hi"], &[]);
        ld(6, &pod_template(&go_pod_spec(&[c], "Never", &[])))
    }

    fn job(spec: &[u8]) -> Vec<u8> {
        let raw = [
            ld(1, &go_meta("x", &[])),
            ld(2, spec),
            ld(3, &go_job_status()),
        ]
        .concat();
        body("batch/v1", "Job", &raw)
    }

    #[test]
    fn job_as_kubectl_create_sends_it() {
        let v = decode(&job(&echo_job_spec())).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "x"},
                "spec": {"template": {"spec": {
                    "containers": [{"name": "x", "image": "busybox", "command": ["echo", "hi"]}],
                    "restartPolicy": "Never"
                }}}
            })
        );
    }

    #[test]
    fn cronjob_as_kubectl_create_sends_it() {
        let c = go_container("c", "busybox", &["date"], &[]);
        let job_template = [
            ld(1, &go_meta("c", &[])),
            ld(
                2,
                &ld(6, &pod_template(&go_pod_spec(&[c], "OnFailure", &[]))),
            ),
        ]
        .concat();
        let spec = [ld(1, b"*/5 * * * *"), ld(3, b""), ld(5, &job_template)].concat();
        let status = b"";
        let raw = [ld(1, &go_meta("c", &[])), ld(2, &spec), ld(3, status)].concat();
        let v = decode(&body("batch/v1", "CronJob", &raw)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "c"},
                "spec": {
                    "schedule": "*/5 * * * *",
                    "jobTemplate": {
                        "metadata": {"name": "c"},
                        "spec": {"template": {"spec": {
                            "containers": [{"name": "c", "image": "busybox", "command": ["date"]}],
                            "restartPolicy": "OnFailure"
                        }}}
                    }
                }
            })
        );
    }

    fn labels(k: &str, v: &str) -> Vec<u8> {
        ld(11, &[ld(1, k.as_bytes()), ld(2, v.as_bytes())].concat())
    }

    fn deployment(replicas: u64) -> Vec<u8> {
        let port = [ld(1, b""), vf(2, 0), vf(3, 8080), ld(4, b""), ld(5, b"")].concat();
        let c = go_container("nginx", "nginx", &[], &[ld(6, &port)]);
        let template = [
            ld(1, &go_meta("", &[labels("app", "d")])),
            ld(2, &go_pod_spec(&[c], "", &[])),
        ]
        .concat();
        let selector = ld(1, &[ld(1, b"app"), ld(2, b"d")].concat());
        let spec = [
            vf(1, replicas),
            ld(2, &selector),
            ld(3, &template),
            ld(4, &ld(1, b"")),
            vf(5, 0),
            vf(7, 0),
        ]
        .concat();
        let status = [vf(1, 0), vf(2, 0), vf(3, 0), vf(4, 0), vf(5, 0)].concat();
        let raw = [
            ld(1, &go_meta("d", &[labels("app", "d")])),
            ld(2, &spec),
            ld(3, &status),
        ]
        .concat();
        body("apps/v1", "Deployment", &raw)
    }

    #[test]
    fn deployment_with_replicas_and_a_port() {
        let v = decode(&deployment(3)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d", "labels": {"app": "d"}},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {
                        "metadata": {"labels": {"app": "d"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx", "ports": [{"containerPort": 8080}]
                        }]}
                    }
                }
            })
        );
    }

    #[test]
    fn pointer_zeros_are_kept_and_value_zeros_are_not() {
        let v = decode(&deployment(0)).unwrap();
        assert_eq!(v["spec"]["replicas"], json!(0));
        assert!(v["spec"].get("minReadySeconds").is_none());
        assert!(v["spec"].get("paused").is_none());
        assert!(v["spec"].get("strategy").is_none());
        // suspend (*bool) false, securityContext (*PodSecurityContext) empty, priority (*int32)
        // 0 are set; hostNetwork (bool) false and dnsPolicy ("") are not.
        let c = go_container("x", "busybox", &[], &[]);
        let ps = go_pod_spec(&[c], "Never", &[ld(14, b""), vf(25, 0)]);
        let spec = [vf(10, 0), ld(6, &pod_template(&ps))].concat();
        let v = decode(&job(&spec)).unwrap();
        assert_eq!(v["spec"]["suspend"], json!(false));
        let ps = &v["spec"]["template"]["spec"];
        assert_eq!(ps["securityContext"], json!({}));
        assert_eq!(ps["priority"], json!(0));
        assert!(ps.get("hostNetwork").is_none());
        assert!(ps.get("dnsPolicy").is_none());
    }

    fn service(target_port: &[u8]) -> Vec<u8> {
        let port = [
            ld(1, b"80-8080"),
            ld(2, b"TCP"),
            vf(3, 80),
            ld(4, target_port),
            vf(5, 0),
        ]
        .concat();
        let spec = [
            ld(1, &port),
            ld(2, &[ld(1, b"app"), ld(2, b"s")].concat()),
            ld(3, b""),
            ld(4, b"ClusterIP"),
            ld(7, b""),
            vf(13, 0),
        ]
        .concat();
        let status = ld(1, b"");
        let raw = [ld(1, &go_meta("s", &[])), ld(2, &spec), ld(3, &status)].concat();
        body("v1", "Service", &raw)
    }

    #[test]
    fn service_target_port_is_an_int_or_a_string() {
        let int = [vf(1, 0), vf(2, 8080), ld(3, b"")].concat();
        let v = decode(&service(&int)).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "s"},
                    "type": "ClusterIP"
                }
            })
        );
        let named = [vf(1, 1), vf(2, 0), ld(3, b"http")].concat();
        let v = decode(&service(&named)).unwrap();
        assert_eq!(v["spec"]["ports"][0]["targetPort"], json!("http"));
        // An unset targetPort (Go's zero IntOrString) is left to the defaults.
        let unset = [vf(1, 0), vf(2, 0), ld(3, b"")].concat();
        let v = decode(&service(&unset)).unwrap();
        assert!(v["spec"]["ports"][0].get("targetPort").is_none());
    }

    /// Bodies kubectl v1.32.4 sent, captured by a stub server: `create job x --image=busybox
    /// -- echo hi`, `create cronjob c --image=busybox --schedule='* * * * *' -- date`,
    /// `create deployment d --image=nginx --replicas=3 --port=8080`, `create service
    /// clusterip s --tcp=80:8080`, `create service nodeport np --tcp=80:8080
    /// --node-port=30080` and `create job fromcj --from=cronjob/cj` (for a CronJob as
    /// corral stores it, defaults filled in).
    const KUBECTL: &[(&str, &str)] = &[
        ("job", "6b3873000a0f0a0862617463682f763112034a6f621282010a110a017812001a0022002a00320038004200126332610a100a0012001a0022002a00320038004200124d122a0a0178120762757379626f781a046563686f1a0268692a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c201001a082000280030003a001a002200"),
        ("cronjob", "6b3873000a130a0862617463682f7631120743726f6e4a6f62129f010a110a016312001a0022002a003200380042001287010a092a202a202a202a202a1a002a780a110a016312001a0022002a00320038004200126332610a100a0012001a0022002a00320038004200124d12260a0163120762757379626f781a04646174652a0042006a007200800100880100900100a201001a094f6e4661696c757265320042004a0052005800600068008201008a01009a0100c201001a001a002200"),
        ("deployment", "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b1010a1b0a016412001a0022002a003200380042005a080a036170701201641283010803120a0a080a036170701201641a6b0a1a0a0012001a0022002a003200380042005a080a03617070120164124d122f0a056e67696e7812056e67696e782a00320b0a00100018903f22002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200"),
        ("clusterip", "6b3873000a0d0a02763112075365727669636512630a1b0a017312001a0022002a003200380042005a080a0361707012017312400a1b0a0738302d38303830120354435018502207080010903f1a00280012080a036170701201731a002209436c757374657249503a00420052005a00600068001a020a001a002200"),
        ("nodeport", "6b3873000a0d0a02763112075365727669636512670a1d0a026e7012001a0022002a003200380042005a090a0361707012026e7012420a1d0a0738302d38303830120354435018502207080010903f1a002880eb0112090a0361707012026e701a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200"),
        ("from-cronjob", "6b3873000a0f0a0862617463682f763112034a6f6212c0030a7f0a0666726f6d636a12001a0022002a003200380042005a090a047465616d120161622b0a2163726f6e6a6f622e6b756265726e657465732e696f2f696e7374616e746961746512066d616e75616c62090a046e6f746512016e6a240a0743726f6e4a6f621a02636a2209313131312d323232322a0862617463682f7631300112b202080110013286020a100a0012001a0022002a0032003800420012f10112450a02636a120762757379626f781a04646174652a0042006a142f6465762f7465726d696e6174696f6e2d6c6f677206416c77617973800100880100900100a2010446696c651a094f6e4661696c757265201e320c436c75737465724669727374420764656661756c744a0764656661756c74520058006000680072008201008a01009a011164656661756c742d7363686564756c6572b201360a1c6e6f64652e6b756265726e657465732e696f2f6e6f742d726561647912064578697374731a0022094e6f4578656375746528ac02c20100c80100f00101fa0114507265656d70744c6f7765725072696f7269747938064a0a4e6f6e496e6465786564500072135465726d696e6174696e674f724661696c65641a082000280030003a001a002200"),
    ];

    fn kubectl(which: &str) -> Vec<u8> {
        hex(KUBECTL.iter().find(|(w, _)| *w == which).unwrap().1)
    }

    #[test]
    fn bodies_real_kubectl_sent_decode() {
        let v = decode(&kubectl("job")).unwrap();
        assert_eq!(v, decode(&job(&echo_job_spec())).unwrap());

        let v = decode(&kubectl("cronjob")).unwrap();
        assert_eq!(v["spec"]["schedule"], "* * * * *");
        let pod = &v["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["command"], json!(["date"]));
        assert_eq!(pod["restartPolicy"], "OnFailure");

        let v = decode(&kubectl("deployment")).unwrap();
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(v["spec"]["selector"], json!({"matchLabels": {"app": "d"}}));
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["ports"], json!([{"containerPort": 8080}]));

        let v = decode(&kubectl("clusterip")).unwrap();
        assert_eq!(
            v["spec"],
            json!({
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "s"},
                "type": "ClusterIP"
            })
        );
        let v = decode(&kubectl("nodeport")).unwrap();
        assert_eq!(v["spec"]["type"], "NodePort");
        assert_eq!(v["spec"]["ports"][0]["nodePort"], 30080);

        let v = decode(&kubectl("from-cronjob")).unwrap();
        assert_eq!(
            v["metadata"],
            json!({
                "name": "fromcj",
                "labels": {"team": "a"},
                "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "note": "n"},
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "CronJob", "name": "cj",
                    "uid": "1111-2222", "controller": true
                }]
            })
        );
        let spec = &v["spec"];
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["priority"], json!(0));
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["enableServiceLinks"], json!(true));
        assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 300);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn unset_fields_corral_does_not_read_are_skipped() {
        // PodSpec's affinity (18) as an empty message, and a field 99 of varint 0.
        let c = go_container("x", "busybox", &[], &[]);
        let ps = go_pod_spec(&[c], "Never", &[ld(18, b""), vf(99, 0)]);
        let v = decode(&job(&ld(6, &pod_template(&ps)))).unwrap();
        let ps = &v["spec"]["template"]["spec"];
        assert_eq!(ps.as_object().unwrap().len(), 2, "{ps}");
    }

    #[test]
    fn set_fields_corral_does_not_read_are_415s() {
        let c = go_container("x", "busybox", &[], &[]);
        let affinity = ld(18, &ld(1, &ld(1, b"")));
        let ps = go_pod_spec(&[c], "Never", &[affinity]);
        let e = decode(&job(&ld(6, &pod_template(&ps)))).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("PodSpec field 18"), "{}", e.message);
        assert!(e.message.contains("send JSON"), "{}", e.message);

        let nfs = ld(1, &[ld(1, b"v"), ld(2, &ld(7, &ld(1, b"server")))].concat());
        let c = go_container("x", "busybox", &[], &[]);
        let ps = go_pod_spec(&[c], "Never", &[nfs]);
        let e = decode(&job(&ld(6, &pod_template(&ps)))).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("VolumeSource field 7"), "{}", e.message);

        let raw = [ld(1, &go_meta("x", &[])), ld(3, &vf(4, 1))].concat();
        let e = decode(&body("batch/v1", "Job", &raw)).unwrap_err();
        assert_eq!((e.code, e.message.contains("Job status")), (415, true));

        let e = decode(&body("v1", "Pod", b"")).unwrap_err();
        assert_eq!(e.code, 415);
        let e = decode(&body("batch/v1beta1", "CronJob", b"")).unwrap_err();
        assert_eq!(e.code, 415);
    }

    #[test]
    fn deep_nesting_is_a_400() {
        static NESTED: Message = Message {
            name: "Nested",
            fields: &[ptr(1, "child", Ty::Msg(&NESTED))],
        };
        let nest = |depth: usize| (0..depth).fold(Vec::new(), |inner, _| ld(1, &inner));
        assert!(message(&NESTED, &nest(MAX_DEPTH), 0).is_ok());
        let e = message(&NESTED, &nest(1_000), 0).unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        let meta = |secs: i64| {
            let t = vf(1, secs as u64);
            let raw = ld(
                1,
                &go_meta("t", &[])
                    .into_iter()
                    .chain(ld(9, &t))
                    .collect::<Vec<_>>(),
            );
            decode(&body("v1", "ConfigMap", &raw))
        };
        let v = meta(1_700_000_000).unwrap();
        assert_eq!(v["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
        let v = meta(-62_135_596_800).unwrap();
        assert_eq!(v["metadata"]["deletionTimestamp"], "0001-01-01T00:00:00Z");
        assert_eq!(meta(i64::MAX).unwrap_err().code, 400);
        assert_eq!(meta(i64::MIN).unwrap_err().code, 400);
    }

    #[test]
    fn a_configmap_secret_and_serviceaccount_as_kubectl_create_sends_them() {
        let meta = go_meta("cfg", &[labels("app", "web")]);
        let entry = [ld(1, b"k"), ld(2, b"v")].concat();
        let raw = [ld(1, &meta), ld(2, &entry)].concat();
        let v = decode(&body("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );

        let raw = [ld(1, &go_meta("s", &[])), ld(2, &entry), ld(3, b"")].concat();
        let v = decode(&body("v1", "Secret", &raw)).unwrap();
        assert_eq!(v["data"], json!({"k": "dg=="}));
        assert!(v.get("type").is_none());

        let secret_ref = [ld(1, b"Secret"), ld(3, b"tok")].concat();
        let raw = [
            ld(1, &go_meta("sa", &[])),
            ld(2, &secret_ref),
            ld(3, &ld(1, b"pull")),
        ]
        .concat();
        let v = decode(&body("v1", "ServiceAccount", &raw)).unwrap();
        assert_eq!(v["secrets"], json!([{"kind": "Secret", "name": "tok"}]));
        assert_eq!(v["imagePullSecrets"], json!([{"name": "pull"}]));
    }

    #[test]
    fn hostile_bodies_are_400s() {
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\x00\x0a\xff").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\x00\x0a\x05\x0a").unwrap_err().code, 400);
        // A string that is not UTF-8, a wire type that does not fit, a group.
        let raw = ld(1, &ld(1, b"\xff"));
        assert_eq!(
            decode(&body("v1", "ConfigMap", &raw)).unwrap_err().code,
            400
        );
        let raw = ld(1, &vf(1, 7));
        assert_eq!(
            decode(&body("v1", "ConfigMap", &raw)).unwrap_err().code,
            400
        );
        let raw = [ld(1, b""), vec![0x0b]].concat();
        assert_eq!(
            decode(&body("v1", "ConfigMap", &raw)).unwrap_err().code,
            400
        );
    }

    #[test]
    fn mutated_bodies_are_400s_or_415s_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (_, h) in KUBECTL {
            let good = hex(h);
            for _ in 0..3000 {
                let mut b = good.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[i] = next() as u8,
                        1 => b.truncate(i.max(4)),
                        _ => b.insert(i, next() as u8),
                    }
                }
                if let Err(e) = decode(&b) {
                    assert!(matches!(e.code, 400 | 415), "{} {}", e.code, e.message);
                }
            }
        }
    }
}
