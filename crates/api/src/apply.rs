//! PATCH requests: the four patch types applied to the live object (re-read and retried on a
//! concurrent change), server-side apply creating the object when it is absent.

use serde_json::Value;

use crate::objects::{now_rfc3339, Objects, WriteOptions};
use crate::patch::{self, PatchType};
use crate::resources::Resource;
use crate::status::ApiError;
use crate::validate;

/// Applies a PATCH; returns the object, warnings, and whether it was created.
#[allow(clippy::too_many_arguments)]
pub async fn patch(
    objects: &Objects,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
    force: bool,
    wo: &WriteOptions,
) -> Result<(Value, Vec<String>, bool), ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let ptype = PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({ct}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        ))
    })?;
    if ptype == PatchType::Apply && wo.field_manager.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH with apply requires a fieldManager",
        ));
    }
    for _ in 0..16 {
        let live = match objects.get(r, ns, name).await {
            Ok(v) => Some(v),
            Err(e) if e.code == 404 && ptype == PatchType::Apply && sub.is_none() => None,
            Err(e) => return Err(e),
        };
        if ptype == PatchType::Apply {
            let applied =
                patch::parse_apply_body(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let merged = patch::server_side_apply(
                live.as_ref(),
                &applied,
                &wo.field_manager,
                force,
                &now_rfc3339(),
            )
            .map_err(apply_error)?;
            let Some(live) = live else {
                let o = WriteOptions {
                    managed_fields_done: true,
                    ..wo.clone()
                };
                let mut m = merged;
                if m["metadata"]["name"].is_null() {
                    m["metadata"]["name"] = Value::String(name.to_string());
                }
                let (v, w) = objects.create(r, ns, &m, &o).await?;
                return Ok((v, w, true));
            };
            match finish(objects, r, ns, name, sub, &live, merged, wo, true).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                other => return other.map(|(v, w)| (v, w, false)),
            }
        }
        let live = live.expect("present");
        let patched = patch::apply_patch(r.kind, &live, ptype, body).map_err(patch_error)?;
        if let Some(rv) = patched["metadata"]["resourceVersion"].as_str() {
            if Some(rv) != live["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::conflict(
                    &r.qualified(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        match finish(objects, r, ns, name, sub, &live, patched, wo, false).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            other => return other.map(|(v, w)| (v, w, false)),
        }
    }
    Err(ApiError::conflict(
        &r.qualified(),
        name,
        "too many concurrent changes; try again",
    ))
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    objects: &Objects,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    live: &Value,
    patched: Value,
    wo: &WriteOptions,
    applied: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut new, warnings) = validate::decode(r, &patched, wo.field_validation)?;
    if new["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            new["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    let rev: i64 = live["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    new = crate::objects::merge_update(r, live, new, sub)?;
    let o = WriteOptions {
        managed_fields_done: applied,
        ..wo.clone()
    };
    objects
        .write(r, ns, name, live, new, rev, &o)
        .await
        .map(|v| (v, warnings))
}

fn patch_error(e: patch::PatchError) -> ApiError {
    let code = e.status_code();
    let msg = e.to_string();
    match code {
        422 => ApiError::invalid("", "", vec![("".into(), msg)]).with_message(e.to_string()),
        _ => ApiError::bad_request(msg),
    }
}

fn apply_error(e: patch::ApplyError) -> ApiError {
    match e.status_code() {
        409 => ApiError::apply_conflict(e.to_string()),
        422 => ApiError::invalid("", "", vec![]).with_message(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    }
}
