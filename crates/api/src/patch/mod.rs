//! The four patch types of `PATCH` and field management.
//!
//! - JSON patch (RFC 6902) and JSON merge patch (RFC 7396) come from the `json-patch` crate.
//! - Strategic merge patch is ours ([`strategic`]), driven by a table of merge keys per kind
//!   ([`merge_keys`]).
//! - Server-side apply and the `metadata.managedFields` bookkeeping of every write are in
//!   [`apply`], over the field sets of `fieldset`.
//!
//! Everything works on `serde_json::Value` objects as Kubernetes serializes them; nothing here
//! knows about the store or HTTP beyond the status code each error maps to. Error messages are
//! complete sentences with their cause inlined: they end up as a `Status` message, which is
//! the edge where the chain is printed.
//!
//! Limits: `application/apply-patch+yaml` bodies must be JSON (what kubectl and the Python
//! client send); YAML proper is refused with a message saying so.

pub mod apply;
mod fieldset;
pub mod merge_keys;
pub mod strategic;

use serde_json::Value;

pub use apply::{record_update, server_side_apply, ApplyError, FieldConflict};
pub use strategic::strategic_merge;

/// Most operations a JSON patch may hold, as the Kubernetes API server allows.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The patch types, by the `Content-Type` of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7396 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value (parameters such as `charset` are
    /// ignored); `None` for anything else, which the API answers with 415.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let types = [
            ("application/json-patch+json", PatchType::Json),
            ("application/merge-patch+json", PatchType::Merge),
            (
                "application/strategic-merge-patch+json",
                PatchType::StrategicMerge,
            ),
            ("application/apply-patch+yaml", PatchType::Apply),
        ];
        types
            .iter()
            .find(|(name, _)| essence.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    }

    /// The `Content-Type` of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// A patch that could not be applied. Each variant says the HTTP status the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body does not parse as its patch type requires: 400 Bad Request.
    #[error("invalid patch: {0}")]
    Malformed(String),
    /// A server-side apply body that is not JSON: 400 Bad Request.
    #[error(
        "apply-patch+yaml bodies must be JSON (YAML is not supported by this server; \
         kubectl sends JSON)"
    )]
    ApplyBodyNotJson,
    /// A strategic merge patch with a bad directive, or a list element without its merge
    /// key: 400 Bad Request.
    #[error("invalid strategic merge patch: {0}")]
    BadStrategicPatch(String),
    /// A strategic merge patch whose fields disagree with its `$retainKeys`: 422
    /// Unprocessable Entity.
    #[error("strategic merge patch content does not match $retainKeys: {0}")]
    RetainKeysMismatch(String),
    /// A JSON patch operation failed (a `test` that did not match, a path that is not
    /// there): 422 Unprocessable Entity.
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatchFailed(String),
    /// The patched document is not a JSON object: 422 Unprocessable Entity.
    #[error("the patched document is not a JSON object")]
    NotAnObject,
}

impl PatchError {
    /// The HTTP status the API answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Malformed(_)
            | PatchError::ApplyBodyNotJson
            | PatchError::BadStrategicPatch(_) => 400,
            PatchError::RetainKeysMismatch(_)
            | PatchError::JsonPatchFailed(_)
            | PatchError::NotAnObject => 422,
        }
    }

    /// The `reason` of the Kubernetes `Status`.
    pub fn reason(&self) -> &'static str {
        if self.status_code() == 400 {
            "BadRequest"
        } else {
            "Invalid"
        }
    }
}

/// Parses a server-side apply body: JSON (a subset of YAML), an object.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| PatchError::ApplyBodyNotJson)?;
    if !value.is_object() {
        return Err(PatchError::Malformed(
            "an applied configuration must be an object".into(),
        ));
    }
    Ok(value)
}

/// Applies a patch body of `patch_type` to `target`, an object of `kind` (which picks the
/// strategic merge keys). For [`PatchType::Apply`] this is the merge alone, with no field
/// ownership, removals or conflicts: callers that manage fields use [`server_side_apply`].
pub fn apply_patch(
    kind: &str,
    target: &Value,
    patch_type: PatchType,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let result = match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| PatchError::Malformed(format!("not a JSON patch: {e}")))?;
            if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(PatchError::Malformed(format!(
                    "the JSON patch has {} operations, more than the {MAX_JSON_PATCH_OPERATIONS} \
                     allowed",
                    ops.0.len()
                )));
            }
            let mut doc = target.clone();
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
            doc
        }
        PatchType::Merge => {
            let patch = parse_json(patch)?;
            let mut doc = target.clone();
            json_patch::merge(&mut doc, &patch);
            doc
        }
        PatchType::StrategicMerge => strategic_merge(kind, target, &parse_json(patch)?)?,
        PatchType::Apply => {
            let applied = parse_apply_body(patch)?;
            apply::apply_without_ownership(target, &applied).map_err(|e| match e {
                ApplyError::Merge(e) => e,
                other => PatchError::Malformed(other.to_string()),
            })?
        }
    };
    if !result.is_object() {
        return Err(PatchError::NotAnObject);
    }
    Ok(result)
}

fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::Malformed(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        })
    }

    #[test]
    fn content_types_map_to_patch_types() {
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::StrategicMerge,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+cbor"),
            None
        );
    }

    #[test]
    fn merge_patch_null_removes_label() {
        let out = apply_patch(
            "Pod",
            &pod(),
            PatchType::Merge,
            br#"{"metadata":{"labels":{"a":null}}}"#,
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn finalizer_removal_by_each_patch_type() {
        let json = apply_patch(
            "Pod",
            &pod(),
            PatchType::Json,
            br#"[{"op":"test","path":"/metadata/finalizers/0","value":"x"},
                 {"op":"remove","path":"/metadata/finalizers/0"}]"#,
        )
        .unwrap();
        assert_eq!(json["metadata"]["finalizers"], json!(["y"]));
        let merge = apply_patch(
            "Pod",
            &pod(),
            PatchType::Merge,
            br#"{"metadata":{"finalizers":null}}"#,
        )
        .unwrap();
        assert!(merge["metadata"].get("finalizers").is_none());
        let smp = apply_patch(
            "Pod",
            &pod(),
            PatchType::StrategicMerge,
            br#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["y"]}}"#,
        )
        .unwrap();
        assert_eq!(smp["metadata"]["finalizers"], json!(["x"]));
    }

    #[test]
    fn json_patch_test_failure_is_unprocessable() {
        let err = apply_patch(
            "Pod",
            &pod(),
            PatchType::Json,
            br#"[{"op":"test","path":"/metadata/name","value":"other"}]"#,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::JsonPatchFailed(_)));
        assert_eq!(err.status_code(), 422);
        assert_eq!(err.reason(), "Invalid");
        let missing = apply_patch(
            "Pod",
            &pod(),
            PatchType::Json,
            br#"[{"op":"replace","path":"/spec/nope/x","value":1}]"#,
        )
        .unwrap_err();
        assert_eq!(missing.status_code(), 422);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for (t, body) in [
            (PatchType::Json, &b"{\"op\":\"add\"}"[..]),
            (PatchType::Json, b"[{\"op\":\"frob\",\"path\":\"/a\"}]"),
            (PatchType::Merge, b"{nope"),
            (PatchType::StrategicMerge, b"[1,2]"),
            (PatchType::Apply, b"apiVersion: v1\nkind: Pod\n"),
            (PatchType::Apply, b"[1]"),
        ] {
            let err = apply_patch("Pod", &pod(), t, body).unwrap_err();
            assert_eq!(err.status_code(), 400, "{t:?} {err}");
        }
        let yaml = apply_patch("Pod", &pod(), PatchType::Apply, b"kind: Pod").unwrap_err();
        assert!(yaml.to_string().contains("must be JSON"));
    }

    #[test]
    fn patch_to_non_object_is_unprocessable() {
        let err = apply_patch("Pod", &pod(), PatchType::Merge, b"42").unwrap_err();
        assert_eq!(err, PatchError::NotAnObject);
        let err = apply_patch(
            "Pod",
            &pod(),
            PatchType::Json,
            br#"[{"op":"replace","path":"","value":[1]}]"#,
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn strategic_patch_through_apply_patch_merges_containers() {
        let out = apply_patch(
            "Pod",
            &pod(),
            PatchType::StrategicMerge,
            br#"{"spec":{"containers":[{"name":"d","image":"j"}]}}"#,
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn apply_body_merges_without_ownership() {
        let out = apply_patch(
            "Pod",
            &pod(),
            PatchType::Apply,
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"c":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"a": "1", "b": "2", "c": "3"})
        );
        assert!(out["metadata"].get("managedFields").is_none());
    }
}

/// Random documents from a vocabulary of Kubernetes fields and directives, through every patch
/// path: nothing panics, and re-applying what was just applied changes nothing.
#[cfg(test)]
mod random_tests {
    use super::*;
    use serde_json::{json, Map};

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] = &[
        "metadata",
        "labels",
        "finalizers",
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "env",
        "value",
        "ports",
        "containerPort",
        "tolerations",
        "ownerReferences",
        "uid",
        "strategy",
        "type",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/finalizers",
        "status",
    ];
    const WORDS: &[&str] = &["a", "b", "web", "replace", "delete", "merge", ""];

    fn value(rng: &mut Rng, depth: usize) -> Value {
        match if depth > 4 {
            rng.below(4)
        } else {
            rng.below(7)
        } {
            0 => Value::Null,
            1 => json!(rng.pick(WORDS)),
            2 => json!(rng.below(3)),
            3 => json!(rng.below(2) == 0),
            4 | 5 => {
                let mut map = Map::new();
                for _ in 0..rng.below(4) {
                    map.insert(rng.pick(KEYS).to_owned(), value(rng, depth + 1));
                }
                Value::Object(map)
            }
            _ => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        }
    }

    /// A Deployment-shaped object with some fields left out at random.
    fn shaped(rng: &mut Rng) -> Value {
        let mut containers = Vec::new();
        for _ in 0..rng.below(3) {
            let mut c = json!({"name": rng.pick(&["a", "b", "web"])});
            if rng.below(2) == 0 {
                c["image"] = json!(rng.pick(WORDS));
            }
            if rng.below(2) == 0 {
                let env: Vec<Value> = (0..rng.below(3))
                    .map(|_| json!({"name": rng.pick(&["X", "Y"]), "value": rng.pick(WORDS)}))
                    .collect();
                c["env"] = json!(env);
            }
            if rng.below(3) == 0 {
                c["ports"] = json!([{"containerPort": rng.below(3)}]);
            }
            containers.push(c);
        }
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {
            "containers": containers
        }}}});
        if rng.below(2) == 0 {
            d["metadata"]["labels"] = json!({rng.pick(&["a", "b"]): rng.pick(WORDS)});
        }
        if rng.below(2) == 0 {
            let f: Vec<Value> = (0..rng.below(3))
                .map(|_| json!(rng.pick(&["f", "g"])))
                .collect();
            d["metadata"]["finalizers"] = json!(f);
        }
        if rng.below(2) == 0 {
            d["spec"]["replicas"] = json!(rng.below(3));
        }
        d
    }

    fn object(rng: &mut Rng, kind: &str) -> Value {
        let mut v = if rng.below(2) == 0 {
            shaped(rng)
        } else {
            value(rng, 0)
        };
        if !v.is_object() {
            v = json!({});
        }
        v["apiVersion"] = json!("v1");
        v["kind"] = json!(kind);
        v
    }

    #[test]
    fn random_documents_never_panic_and_reapply_is_stable() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut applied = 0;
        for round in 0..5_000 {
            let kind = rng.pick(&["Pod", "Deployment", "Node", "Widget"]);
            let live = object(&mut rng, kind);
            let patch = object(&mut rng, kind);
            let body = patch.to_string();
            for t in [
                PatchType::Merge,
                PatchType::StrategicMerge,
                PatchType::Apply,
            ] {
                let _ = apply_patch(kind, &live, t, body.as_bytes());
            }
            let live = record_update(None, &live, "creator", "Update", "t0");
            let Ok(first) = server_side_apply(Some(&live), &patch, "m", true, "t1") else {
                continue;
            };
            applied += 1;
            let again =
                server_side_apply(Some(&first), &patch, "m", false, "t1").unwrap_or_else(|e| {
                    panic!("round {round}: re-apply failed: {e}\n{first}\n{patch}")
                });
            assert_eq!(
                again, first,
                "round {round}: re-apply changed the object\n{patch}"
            );
            let edited = record_update(Some(&first), &live, "other", "Update", "t2");
            let _ = server_side_apply(Some(&edited), &patch, "m", false, "t3");
            let third = object(&mut rng, kind);
            let _ = server_side_apply(Some(&edited), &third, "m", false, "t3");
            let _ = server_side_apply(Some(&first), &third, "n", false, "t3");
        }
        assert!(applied > 1_000, "only {applied} applies went through");
    }
}
