//! The HTTP side: TLS and bearer-token auth, the path grammar of Kubernetes' REST API,
//! content negotiation (JSON, server-side Tables, aggregated discovery), and the verbs
//! dispatched to [`crate::objects`], [`crate::watch`] and the pod streams.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::objects::{DeleteOptions, ListOptions, Objects, WriteOptions};
use crate::resources::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::validate::FieldValidation;

/// Largest request body accepted (Kubernetes' limit is 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the server serves requests with.
pub struct ApiState {
    /// The object layer.
    pub objects: Objects,
    /// The bearer token clients must present.
    pub token: String,
    /// The pod streams (logs, exec, attach, port-forward), when a node agent serves them.
    pub streams: Option<Arc<dyn crate::streams::PodStreams>>,
    /// The version reported at `/version`.
    pub version: Value,
}

/// A parsed request path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub plural: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub sub: Option<&'a str>,
}

/// Parses the resource part of a path (`/api/v1/...` or `/apis/G/V/...`).
pub(crate) fn parse_target(path: &str) -> Option<Target<'_>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    let t = |plural, namespace, name, sub| {
        Some(Target {
            group,
            version,
            plural,
            namespace,
            name,
            sub,
        })
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            match tail {
                [] => t(plural, Some(*ns), None, None),
                [name] => t(plural, Some(*ns), Some(*name), None),
                [name, sub] => t(plural, Some(*ns), Some(*name), Some(*sub)),
                _ => None,
            }
        }
        [plural] => t(plural, None, None, None),
        [plural, name] => t(plural, None, Some(*name), None),
        [plural, name, sub] => t(plural, None, Some(*name), Some(*sub)),
        _ => None,
    }
}

/// Decodes `%XX` and `+` in a query component.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query's parameters (the last value wins, as Kubernetes does for single values).
pub(crate) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for part in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        m.insert(percent_decode(k), percent_decode(v));
    }
    m
}

/// Every value of a repeated query parameter (`command=a&command=b`).
pub(crate) fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .filter(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

/// A JSON response.
pub(crate) fn json_response(code: StatusCode, v: &Value, warnings: &[String]) -> Response {
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response();
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.to_status(), &[])
    }
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|h| h.to_str().is_ok_and(|s| s.contains(what)))
}

/// Whether the request's bearer token is the server's (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Some(given) = h.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The one handler: every request comes through here.
pub async fn handle(State(st): State<Arc<ApiState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if matches!(path.as_str(), "/livez" | "/readyz" | "/healthz") {
        return (StatusCode::OK, "ok").into_response();
    }
    if !authorized(req.headers(), &st.token) {
        return ApiError::unauthorized().into_response();
    }
    match route(&st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    let body = req.into_body();
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))
}

/// A request body that is an object: JSON, or protobuf for the kinds kubectl's generators
/// send that way.
async fn read_object(req: Request) -> Result<Value, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = read_body(req).await?;
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::protobuf::decode(&body);
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({ct}) - accepted media types include: application/json"
        )));
    }
    parse_json(&body)
}

fn parse_json(b: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn write_options(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {o}: only All is"
            )))
        }
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    let default_manager = agent.split('/').next().unwrap_or("unknown").to_string();
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?,
        field_manager: q.get("fieldManager").cloned().unwrap_or(default_manager),
        managed_fields_done: false,
    })
}

fn list_options(r: &Resource, q: &HashMap<String, String>) -> Result<ListOptions, ApiError> {
    let labels = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => {
            let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let allowed: Vec<&str> = ["metadata.name", "metadata.namespace"]
                .into_iter()
                .chain(r.fields.iter().copied())
                .collect();
            f.validate(&allowed).map_err(|e| {
                ApiError::bad_request(format!("\"{s}\" is not a known field selector: {e}"))
            })?;
            Some(f)
        }
        None => None,
    };
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: q
            .get("resourceVersionMatch")
            .filter(|s| !s.is_empty())
            .cloned(),
    })
}

fn delete_options(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = parse_json(body)?;
        o.grace_period = v["gracePeriodSeconds"].as_i64();
        o.propagation = v["propagationPolicy"].as_str().map(str::to_string);
        o.uid = v["preconditions"]["uid"].as_str().map(str::to_string);
        o.resource_version = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        o.dry_run = v["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"));
        if v["orphanDependents"] == json!(true) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        o.grace_period = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?,
        );
    }
    if let Some(p) = q.get("propagationPolicy") {
        o.propagation = Some(p.clone());
    }
    if q.get("dryRun").map(String::as_str) == Some("All") {
        o.dry_run = true;
    }
    Ok(o)
}

async fn route(st: &Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let q = parse_query(raw_query.as_deref());
    let method = req.method().clone();
    let headers = req.headers().clone();
    let discovery_agg = accepts(&headers, "as=APIGroupDiscoveryList");
    let get = method == Method::GET;
    match path.trim_end_matches('/') {
        "/version" if get => return Ok(json_response(StatusCode::OK, &st.version, &[])),
        "/api" if get => {
            return Ok(if discovery_agg {
                aggregated(true)
            } else {
                json_response(StatusCode::OK, &resources::api_versions(), &[])
            })
        }
        "/apis" if get => {
            return Ok(if discovery_agg {
                aggregated(false)
            } else {
                json_response(StatusCode::OK, &resources::api_group_list(), &[])
            })
        }
        p if get && p.starts_with("/openapi/") => return crate::openapi::serve(p),
        _ => {}
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", v] if get => {
            return resources::resource_list("", v)
                .map(|l| json_response(StatusCode::OK, &l, &[]))
                .ok_or_else(ApiError::no_route)
        }
        ["apis", g] if get => {
            let list = resources::api_group_list();
            let group = list["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["name"] == *g).cloned());
            return group
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(StatusCode::OK, &g, &[])
                })
                .ok_or_else(ApiError::no_route);
        }
        ["apis", g, v] if get => {
            return resources::resource_list(g, v)
                .map(|l| json_response(StatusCode::OK, &l, &[]))
                .ok_or_else(ApiError::no_route)
        }
        _ => {}
    }
    let t = parse_target(&path).ok_or_else(ApiError::no_route)?;
    let r = resources::find(t.group, t.version, t.plural).ok_or_else(ApiError::no_route)?;
    if r.namespaced && t.namespace.is_none() && t.name.is_some() {
        return Err(ApiError::no_route());
    }
    if !r.namespaced && t.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = t.sub {
        if !r.subresources.contains(&sub) {
            return Err(ApiError::no_route());
        }
    }
    if r.read_only() && method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{} are read-only: the node agents write them",
            r.qualified()
        )));
    }
    let ns = t.namespace;
    let table = accepts(&headers, "as=Table");
    let include_object = q
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let watch = matches!(q.get("watch").map(String::as_str), Some("true") | Some("1"));
    let objects = &st.objects;
    match (&method, t.name, t.sub) {
        (&Method::GET, None, None) if watch => {
            let o = list_options(r, &q)?;
            crate::watch::serve(st.clone(), r, ns.map(str::to_string), o, &q, table).await
        }
        (&Method::GET, None, None) => {
            let o = list_options(r, &q)?;
            let page = objects.list(r, ns, &o).await?;
            if table {
                return Ok(json_response(
                    StatusCode::OK,
                    &crate::table::list_table(r, &page, &include_object),
                    &[],
                ));
            }
            let mut meta = json!({"resourceVersion": page.revision.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = page.remaining.filter(|n| *n > 0) {
                meta["remainingItemCount"] = json!(n);
            }
            let list = json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": meta, "items": page.items});
            Ok(json_response(StatusCode::OK, &list, &[]))
        }
        (&Method::GET, Some(name), None) if watch => {
            let mut o = list_options(r, &q)?;
            let sel = format!("metadata.name={name}");
            o.fields =
                Some(FieldSelector::parse(&sel).map_err(|e| ApiError::bad_request(e.to_string()))?);
            crate::watch::serve(st.clone(), r, ns.map(str::to_string), o, &q, table).await
        }
        (&Method::GET, Some(name), Some("scale")) => Ok(json_response(
            StatusCode::OK,
            &crate::workloads::get_scale(objects, r, ns, name).await?,
            &[],
        )),
        (&Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            let wo = write_options(&q, &headers)?;
            let ct = content_type(&headers);
            let patch = (method == Method::PATCH).then_some(ct.as_str());
            let body = read_body(req).await?;
            let v = crate::workloads::write_scale(objects, r, ns, name, &body, patch, &wo).await?;
            Ok(json_response(StatusCode::OK, &v, &[]))
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            let v = objects.get(r, ns, name).await?;
            if table && t.sub.is_none() {
                return Ok(json_response(
                    StatusCode::OK,
                    &crate::table::object_table(r, &v, &include_object),
                    &[],
                ));
            }
            Ok(json_response(StatusCode::OK, &v, &[]))
        }
        (&Method::POST, None, None) => {
            let wo = write_options(&q, &headers)?;
            let body = read_object(req).await?;
            let (v, w) = objects.create(r, ns, &body, &wo).await?;
            Ok(json_response(StatusCode::CREATED, &v, &w))
        }
        (&Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let wo = write_options(&q, &headers)?;
            let body = read_object(req).await?;
            let sub = t.sub.filter(|s| *s == "status");
            let (v, w) = objects.update(r, ns, name, &body, sub, &wo).await?;
            Ok(json_response(StatusCode::OK, &v, &w))
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let wo = write_options(&q, &headers)?;
            let ct = content_type(&headers);
            let force = matches!(q.get("force").map(String::as_str), Some("true") | Some("1"));
            let body = read_body(req).await?;
            let (v, w, created) =
                crate::apply::patch(objects, r, ns, name, t.sub, &ct, &body, force, &wo).await?;
            Ok(json_response(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &v,
                &w,
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let body = read_body(req).await?;
            let o = delete_options(&q, &body)?;
            let v = objects.delete(r, ns, name, &o).await?;
            Ok(json_response(StatusCode::OK, &v, &[]))
        }
        (&Method::DELETE, None, None) => {
            let body = read_body(req).await?;
            let o = delete_options(&q, &body)?;
            let lo = list_options(r, &q)?;
            let page = objects.list(r, ns, &lo).await?;
            let mut items = Vec::new();
            for it in page.items {
                let n = it["metadata"]["name"].as_str().unwrap_or("").to_string();
                let itns = it["metadata"]["namespace"].as_str().map(str::to_string);
                match objects.delete(r, itns.as_deref().or(ns), &n, &o).await {
                    Ok(v) => items.push(v),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": {}, "items": items});
            Ok(json_response(StatusCode::OK, &list, &[]))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let body = parse_json(&read_body(req).await?)?;
            let node = body["target"]["name"]
                .as_str()
                .ok_or_else(|| ApiError::bad_request("binding.target.name is required"))?;
            objects.bind(ns.unwrap_or("default"), name, node).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &crate::status::success(json!({"name": name, "kind": "pods"})),
                &[],
            ))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            let body = read_body(req).await?;
            let o = delete_options(&q, &body)?;
            let delete = DeleteOptions {
                grace_period: o.grace_period,
                ..Default::default()
            };
            crate::disruption::evict(objects, ns.unwrap_or("default"), name, &delete).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &crate::status::success(json!({"name": name, "kind": "pods"})),
                &[],
            ))
        }
        (_, Some(name), Some(sub @ ("log" | "exec" | "attach" | "portforward"))) => {
            let streams = st
                .streams
                .clone()
                .ok_or_else(|| ApiError::internal("no node agent serves pod streams here"))?;
            let ns = ns.unwrap_or("default").to_string();
            let pod = objects.get(r, Some(&ns), name).await?;
            crate::streams::serve(streams, sub, &pod, raw_query.as_deref(), req).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{} is not allowed on this path",
            method
        ))),
    }
}

/// The request's `Content-Type`, or "".
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn aggregated(core: bool) -> Response {
    let mut r = json_response(StatusCode::OK, &resources::aggregated(core), &[]);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ),
    );
    r
}

/// A body of a response that streams.
pub(crate) fn stream_body<S>(s: S) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    Body::from_stream(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_target("/api/v1/namespaces/default/pods/web/log").unwrap();
        assert_eq!(
            (t.plural, t.namespace, t.name, t.sub),
            ("pods", Some("default"), Some("web"), Some("log"))
        );
        let t = parse_target("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (t.plural, t.namespace, t.name),
            ("namespaces", None, Some("default"))
        );
        let t = parse_target("/api/v1/namespaces/kube-system/status").unwrap();
        assert_eq!(
            (t.plural, t.name, t.sub),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let t = parse_target("/api/v1/pods").unwrap();
        assert_eq!((t.plural, t.namespace), ("pods", None));
        let t = parse_target("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            .unwrap();
        assert_eq!(
            (t.group, t.plural, t.namespace, t.name),
            (
                "coordination.k8s.io",
                "leases",
                Some("kube-node-lease"),
                Some("n1")
            )
        );
        let t = parse_target("/api/v1/namespaces").unwrap();
        assert_eq!((t.plural, t.name), ("namespaces", None));
        assert!(parse_target("/api/v1").is_none());
    }

    #[test]
    fn queries() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(
            query_all(Some("command=sh&command=-c&x=1"), "command"),
            vec!["sh", "-c"]
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
    }

    #[test]
    fn tokens_compared_whole() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(authorized(&h, "abc"));
        assert!(!authorized(&h, "abcd"));
        assert!(!authorized(&HeaderMap::new(), "abc"));
    }
}
