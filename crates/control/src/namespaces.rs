//! The namespace controller: a namespace being deleted is emptied (every namespaced object
//! deleted as the API would, pods gracefully) and then removed; every active namespace has a
//! `default` ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use corral_store::{registry, Store};
use serde_json::json;

use crate::kv;

/// Runs until `shutdown` turns true. `kinds` are the (group, plural) of every namespaced
/// resource the API serves.
pub async fn run(
    store: Arc<dyn Store>,
    kinds: Vec<(&'static str, &'static str)>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let prefix = registry::prefix("", "namespaces", None);
    loop {
        let mut watch = match store.watch(&prefix, 0).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("namespace controller: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut busy = sync(&store, &kinds).await;
        loop {
            let wait = if busy {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(30)
            };
            tokio::select! {
                ev = watch.events.recv() => if ev.is_none() { break },
                _ = tokio::time::sleep(wait) => {},
                _ = shutdown.changed() => return,
            }
            while watch.events.try_recv().is_ok() {}
            busy = sync(&store, &kinds).await;
        }
    }
}

/// One pass; true while some namespace is still being emptied.
async fn sync(store: &Arc<dyn Store>, kinds: &[(&'static str, &'static str)]) -> bool {
    let Ok((namespaces, _)) = kv::list(store, &registry::prefix("", "namespaces", None)).await
    else {
        return true;
    };
    let mut busy = false;
    for ns in namespaces {
        let name = ns["metadata"]["name"].as_str().unwrap_or("").to_string();
        if ns["metadata"]["deletionTimestamp"].is_null() {
            ensure_service_account(store, &ns, &name).await;
            continue;
        }
        let mut left = 0;
        for (group, plural) in kinds {
            let Ok((objs, _)) =
                kv::list(store, &registry::prefix(group, plural, Some(&name))).await
            else {
                left += 1;
                continue;
            };
            for o in objs {
                left += 1;
                let key = registry::key(
                    group,
                    plural,
                    Some(&name),
                    o["metadata"]["name"].as_str().unwrap_or(""),
                );
                if let Err(e) = kv::delete_like_api(store, &key).await {
                    tracing::warn!("emptying namespace {name}: {e}");
                }
            }
        }
        if left == 0 {
            let key = registry::key("", "namespaces", None, &name);
            let _ = kv::modify(store, &key, |v| {
                let meta_fin = v["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if meta_fin {
                    if let Some(m) = v["spec"].as_object_mut() {
                        m.remove("finalizers");
                    }
                    kv::Change::Write
                } else {
                    kv::Change::Delete
                }
            })
            .await;
        } else {
            busy = true;
        }
    }
    busy
}

async fn ensure_service_account(store: &Arc<dyn Store>, ns: &serde_json::Value, name: &str) {
    let key = registry::key("", "serviceaccounts", Some(name), "default");
    if matches!(store.get(&key).await, Ok(Some(_))) {
        return;
    }
    let _ = ns;
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": name, "uid": kv::uid(), "creationTimestamp": kv::now()},
    });
    let _ = store.create(&key, registry::encode(&sa), 0).await;
}
