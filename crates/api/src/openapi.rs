//! A minimal OpenAPI v3 listing: every served path with its verbs, its kind
//! (`x-kubernetes-group-version-kind`) and the query parameters that matter to clients —
//! `fieldValidation` above all, which is how kubectl learns that this server validates
//! fields itself (so `kubectl apply` and `create` need no client-side schema).

use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::resources::{Resource, RESOURCES};
use crate::status::ApiError;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, verb: &str, action: &str, params: &[&str]) -> Value {
    let ps: Vec<Value> = params.iter().map(|p| param(p)).collect();
    json!({
        "operationId": format!("{verb}{}", r.kind),
        "parameters": ps,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

fn document(group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let list = [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "watch",
        "timeoutSeconds",
        "sendInitialEvents",
        "allowWatchBookmarks",
    ];
    let mut any = false;
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        any = true;
        let base = if r.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                r.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), r.plural)
        };
        paths.insert(
            base.clone(),
            json!({
                "get": operation(r, "list", "list", &list),
                "post": operation(r, "create", "post", &write),
                "delete": operation(r, "deletecollection", "deletecollection", &list),
            }),
        );
        let mut patch_params = write.to_vec();
        patch_params.push("force");
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": operation(r, "read", "get", &["pretty"]),
                "put": operation(r, "replace", "put", &write),
                "patch": operation(r, "patch", "patch", &patch_params),
                "delete": operation(r, "delete", "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
        if r.subresources.contains(&"status") {
            paths.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": operation(r, "read", "get", &["pretty"]),
                    "put": operation(r, "replace", "put", &write),
                    "patch": operation(r, "patch", "patch", &patch_params),
                }),
            );
        }
    }
    any.then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": crate::KUBE_VERSION},
            "paths": paths,
            "components": {"schemas": schemas(group, version)},
        })
    })
}

/// The schemas of a group version's kinds that have one here: corral's own kinds, as a
/// CustomResourceDefinition's schema is served (what `kubectl explain` reads).
fn schemas(group: &str, version: &str) -> Value {
    let mut m = Map::new();
    if (group, version) == ("corral.dev", "v1") {
        for (kind, schema) in crate::virtualmachines::schemas() {
            m.insert(format!("dev.corral.v1.{kind}"), schema);
        }
    }
    Value::Object(m)
}

/// Answers `/openapi/v3` (the root listing) and `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`.
pub fn serve(path: &str) -> Result<Response, ApiError> {
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if !path.starts_with("/openapi/v3") {
        return Err(ApiError::no_route());
    }
    let doc = if rest.is_empty() {
        let mut m = Map::new();
        let mut seen = Vec::new();
        for r in RESOURCES {
            let p = gv_path(r.group, r.version);
            if !seen.contains(&p) {
                m.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", crate::KUBE_VERSION)}));
                seen.push(p);
            }
        }
        json!({"paths": m})
    } else {
        let segs: Vec<&str> = rest.split('/').collect();
        match segs.as_slice() {
            ["api", v] => document("", v),
            ["apis", g, v] => document(g, v),
            _ => None,
        }
        .ok_or_else(ApiError::no_route)?
    };
    Ok(crate::http::json_response(StatusCode::OK, &doc, &[]))
}
