//! Watches as Kubernetes serves them: a stream of `{"type": ..., "object": ...}` lines.
//!
//! A watch without a resourceVersion (or with "0") starts with the current objects as ADDED
//! events; with `sendInitialEvents=true` those end with a BOOKMARK marked
//! `k8s.io/initial-events-end` (what `kubectl wait`, `rollout status` and `delete --wait`
//! wait for); with a resourceVersion it replays every change after it, or answers with an
//! ERROR event of 410 Expired when compaction has dropped it. Selectors turn an object that
//! stops (or starts) matching into DELETED (or ADDED). Bookmarks every 30 s when asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use corral_store::{registry, Event, Revision};
use http::{header, StatusCode};
use serde_json::{json, Value};

use crate::http::ApiState;
use crate::objects::ListOptions;
use crate::resources::Resource;
use crate::status::ApiError;

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

fn matches(o: &ListOptions, v: &Value) -> bool {
    o.labels
        .as_ref()
        .is_none_or(|s| s.matches(v["metadata"].get("labels")))
        && o.fields.as_ref().is_none_or(|s| s.matches(v))
}

fn line(ty: &str, obj: Value) -> Bytes {
    let mut s = json!({"type": ty, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

struct Shape {
    r: &'static Resource,
    table: bool,
    first: std::sync::atomic::AtomicBool,
}

impl Shape {
    fn event(&self, ty: &str, v: Value) -> Bytes {
        if self.table {
            let first = self.first.swap(false, std::sync::atomic::Ordering::Relaxed);
            let mut t = crate::table::object_table(self.r, &v, "Object");
            if !first {
                t["columnDefinitions"] = json!([]);
            }
            line(ty, t)
        } else {
            line(ty, v)
        }
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": meta}),
        )
    }
}

/// Starts a watch and returns the streaming response.
pub async fn serve(
    st: Arc<ApiState>,
    r: &'static Resource,
    ns: Option<String>,
    o: ListOptions,
    q: &HashMap<String, String>,
    table: bool,
) -> Result<Response, ApiError> {
    let rv = q.get("resourceVersion").cloned().unwrap_or_default();
    let initial_events = q.get("sendInitialEvents").map(String::as_str) == Some("true");
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    if initial_events && q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "ListOptions",
            "",
            vec![("resourceVersionMatch".into(), "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into())],
        ));
    }
    let synthetic = initial_events || rv.is_empty() || rv == "0";
    let prefix = registry::prefix(
        r.group,
        r.plural,
        if r.namespaced { ns.as_deref() } else { None },
    );
    let shape = Arc::new(Shape {
        r,
        table,
        first: std::sync::atomic::AtomicBool::new(true),
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);

    let mut start: Revision;
    let mut initial = Vec::new();
    if synthetic {
        let lo = ListOptions {
            labels: o.labels.clone(),
            fields: o.fields.clone(),
            ..Default::default()
        };
        let page = st.objects.list(r, ns.as_deref(), &lo).await?;
        start = page.revision;
        initial = page.items;
    } else {
        start = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {rv}")))?;
    }
    let store = st.objects.store().clone();
    let first_watch = store.watch(&prefix, start).await;
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        for v in initial {
            if tx.send(Ok(shape.event("ADDED", v))).await.is_err() {
                return;
            }
        }
        if initial_events {
            let _ = tx.send(Ok(shape.bookmark(start, true))).await;
        }
        let mut watch = match first_watch {
            Ok(w) => w,
            Err(e) => {
                let err: ApiError = e.into();
                let _ = tx.send(Ok(line("ERROR", err.to_status()))).await;
                return;
            }
        };
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
            tokio::select! {
                ev = watch.events.recv() => {
                    let Some(ev) = ev else {
                        // The store dropped a slow watch: start again after the last event sent.
                        match store.watch(&prefix, start).await {
                            Ok(w) => { watch = w; continue; }
                            Err(e) => {
                                let err: ApiError = e.into();
                                let _ = tx.send(Ok(line("ERROR", err.to_status()))).await;
                                return;
                            }
                        }
                    };
                    start = ev.revision();
                    let out = match ev {
                        Event::Put { kv, prev } => {
                            let Some(new) = registry::decode(&kv) else { continue };
                            let was = prev.as_ref().and_then(registry::decode).is_some_and(|p| matches(&o, &p));
                            match (was, matches(&o, &new)) {
                                (false, true) => Some(shape.event("ADDED", new)),
                                (true, true) => Some(shape.event("MODIFIED", new)),
                                (true, false) => Some(shape.event("DELETED", new)),
                                (false, false) => None,
                            }
                        }
                        Event::Delete { prev, revision } => {
                            let Some(mut old) = registry::decode(&prev) else { continue };
                            registry::stamp(&mut old, revision);
                            matches(&o, &old).then(|| shape.event("DELETED", old))
                        }
                    };
                    if let Some(b) = out {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(shape.bookmark(start, false))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = (StatusCode::OK, crate::http::stream_body(stream)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
