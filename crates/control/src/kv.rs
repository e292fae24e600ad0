//! Small helpers over the store the controllers share: read a whole prefix, change one
//! object with a guarded read-modify-write, make an object with fresh metadata, and record
//! an Event.

use std::sync::Arc;

use corral_store::{registry, RangeRequest, Revision, Store, StoreError};
use serde_json::{json, Value};

/// An object's name ("" if it has none).
pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// An object's namespace ("" if it has none).
pub fn namespace(v: &Value) -> &str {
    v["metadata"]["namespace"].as_str().unwrap_or("")
}

/// An object's uid ("" if it has none).
pub fn uid_of(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().unwrap_or("")
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether an object's `Ready` condition is True (a pod's, a node's).
pub fn is_ready(v: &Value) -> bool {
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether an object is being deleted.
pub fn deleting(v: &Value) -> bool {
    !v["metadata"]["deletionTimestamp"].is_null()
}

/// Every object under a prefix, with the revision of the read.
pub async fn list(
    store: &Arc<dyn Store>,
    prefix: &str,
) -> Result<(Vec<Value>, Revision), StoreError> {
    list_where(store, prefix, |_| true).await
}

/// The objects under a prefix whose stored JSON contains `needle`, with the revision of the
/// read: a cheap filter on the bytes before decoding, for a pass that needs only a few of many
/// objects (decoding every pod for nothing costs time and memory under load).
pub async fn list_containing(
    store: &Arc<dyn Store>,
    prefix: &str,
    needle: &str,
) -> Result<(Vec<Value>, Revision), StoreError> {
    let n = needle.as_bytes();
    list_where(store, prefix, |raw| raw.windows(n.len()).any(|w| w == n)).await
}

/// The objects under a prefix whose stored bytes `keep` accepts, decoded.
async fn list_where(
    store: &Arc<dyn Store>,
    prefix: &str,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<(Vec<Value>, Revision), StoreError> {
    let r = store
        .range(RangeRequest {
            prefix: prefix.to_string(),
            ..Default::default()
        })
        .await?;
    Ok((
        r.kvs
            .iter()
            .filter(|kv| keep(&kv.value))
            .filter_map(registry::decode)
            .collect(),
        r.revision,
    ))
}

/// What a change function decides.
pub enum Change {
    /// Write the object as changed.
    Write,
    /// Leave it.
    Keep,
    /// Delete it.
    Delete,
}

/// Reads `key`, lets `f` change it, writes it back guarded by the revision read; retries on
/// a concurrent change. `Ok(false)` if the key is gone.
pub async fn modify(
    store: &Arc<dyn Store>,
    key: &str,
    mut f: impl FnMut(&mut Value) -> Change,
) -> Result<bool, StoreError> {
    for _ in 0..32 {
        let Some(kv) = store.get(key).await? else {
            return Ok(false);
        };
        let Some(mut v) = registry::decode(&kv) else {
            return Ok(false);
        };
        let r = match f(&mut v) {
            Change::Keep => return Ok(true),
            Change::Write => store
                .update(key, registry::encode(&v), kv.mod_revision)
                .await
                .map(|_| ()),
            Change::Delete => store.delete(key, kv.mod_revision).await.map(|_| ()),
        };
        match r {
            Ok(()) => return Ok(true),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(format!(
        "{key}: too many concurrent changes"
    )))
}

pub use corral_store::meta::{now, uid};

/// Records an Event about `obj` (kind, namespace, name, uid taken from it), kept an hour.
pub async fn event(
    store: &Arc<dyn Store>,
    obj: &Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let suffix: String = uid().replace('-', "")[..16].to_string();
    let ev_name = format!("{name}.{suffix}");
    let t = now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": ev_name, "namespace": ns, "uid": uid(), "creationTimestamp": t},
        "involvedObject": {
            "kind": obj["kind"], "namespace": ns, "name": name, "uid": obj["metadata"]["uid"],
            "apiVersion": obj["apiVersion"], "resourceVersion": obj["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "type": ty,
        "source": {"component": component},
        "firstTimestamp": t, "lastTimestamp": t, "count": 1,
        "reportingComponent": component, "reportingInstance": "",
    });
    let lease = event_lease(store).await;
    let _ = store
        .create(
            &registry::key("", "events", Some(ns), &ev_name),
            registry::encode(&ev),
            lease,
        )
        .await;
}

/// One store lease per hour for events (each lives 1 to 2 hours), not one per event.
async fn event_lease(store: &Arc<dyn Store>) -> i64 {
    static LEASE: std::sync::Mutex<(u64, i64)> = std::sync::Mutex::new((u64::MAX, 0));
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600)
        .unwrap_or(0);
    {
        let l = LEASE.lock().expect("lease cache");
        if l.0 == hour {
            return l.1;
        }
    }
    let id = store.lease_grant(7200).await.unwrap_or(0);
    *LEASE.lock().expect("lease cache") = (hour, id);
    id
}

/// Deletes an object the way the API's DELETE does: a pod running on a node is marked for
/// graceful deletion (its node agent ends it), an object with finalizers is marked with a
/// deletionTimestamp, anything else goes at once.
pub async fn delete_like_api(store: &Arc<dyn Store>, key: &str) -> Result<(), StoreError> {
    modify(store, key, |v| {
        let finalizers = v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let running_pod = v["kind"] == "Pod"
            && !v["spec"]["nodeName"].is_null()
            && !matches!(
                v["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            );
        if !finalizers && !running_pod {
            return Change::Delete;
        }
        if !v["metadata"]["deletionTimestamp"].is_null() {
            return Change::Keep;
        }
        let grace = if running_pod {
            v["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        } else {
            0
        };
        let m = v["metadata"].as_object_mut().expect("metadata");
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        Change::Write
    })
    .await
    .map(|_| ())
}

/// Removes `finalizer` from an object being deleted; the object goes when none is left.
pub async fn remove_finalizer(
    store: &Arc<dyn Store>,
    key: &str,
    finalizer: &str,
) -> Result<(), StoreError> {
    modify(store, key, |v| {
        let Some(list) = v["metadata"]["finalizers"].as_array_mut() else {
            return Change::Keep;
        };
        let before = list.len();
        list.retain(|f| f != finalizer);
        if list.len() == before {
            return Change::Keep;
        }
        let empty = list.is_empty();
        if empty && !v["metadata"]["deletionTimestamp"].is_null() {
            return Change::Delete;
        }
        Change::Write
    })
    .await
    .map(|_| ())
}

/// A controller's loop: one pass at start, then one after each burst of changes under any of
/// `prefixes` (or after a while: 1 s while the last pass said it is busy, else 30 s), until
/// `shutdown` turns true. A broken watch is made again.
pub async fn watch_loop<F, Fut>(
    store: &Arc<dyn Store>,
    prefixes: &[String],
    what: &str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use std::time::Duration;
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut ok = true;
        let mut tasks = Vec::new();
        for p in prefixes {
            match store.watch(p, 0).await {
                Ok(mut w) => {
                    let tx = tx.clone();
                    tasks.push(tokio::spawn(async move {
                        while w.events.recv().await.is_some() {
                            let _ = tx.try_send(());
                        }
                    }));
                }
                Err(e) => {
                    tracing::warn!("{what}: {e}");
                    ok = false;
                }
            }
        }
        drop(tx);
        if ok {
            let mut busy = pass().await;
            loop {
                let wait = Duration::from_millis(if busy { 1000 } else { 30_000 });
                tokio::select! {
                    ev = rx.recv() => if ev.is_none() { break },
                    _ = tokio::time::sleep(wait) => {},
                    _ = shutdown.changed() => {
                        tasks.iter().for_each(|t| t.abort());
                        return;
                    }
                }
                // Let a burst of changes land, then one pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
                busy = pass().await;
            }
        }
        tasks.iter().for_each(|t| t.abort());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Creates `obj` in namespace `ns` through the API's own create path, as the controller
/// manager does (field manager `kube-controller-manager`): defaulted and checked as a
/// user's object is. The kind is the object's `apiVersion` and `kind`.
pub async fn create_as_controller(
    objects: &corral_api::objects::Objects,
    ns: &str,
    obj: &Value,
) -> Result<Value, corral_api::status::ApiError> {
    let r = corral_api::resources::by_kind(
        obj["apiVersion"].as_str().unwrap_or(""),
        obj["kind"].as_str().unwrap_or(""),
    )
    .ok_or_else(|| {
        corral_api::status::ApiError::internal("a controller made a kind that is not served")
    })?;
    let wo = corral_api::objects::WriteOptions {
        field_manager: "kube-controller-manager".into(),
        ..Default::default()
    };
    objects.create(r, Some(ns), obj, &wo).await.map(|(v, _)| v)
}
