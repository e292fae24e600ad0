//! The garbage collector: objects whose owners (`metadata.ownerReferences`) are all gone are
//! deleted (background propagation); an owner deleted with `propagationPolicy: Orphan` (the
//! `orphan` finalizer) first has its dependents released; one deleted with `Foreground`
//! (the `foregroundDeletion` finalizer) stays until its dependents are gone.
//!
//! It keeps, from one watch over everything, which objects each uid owns, so finding the
//! dependents of a deleted owner reads nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_store::{registry, Event, Store};
use serde_json::Value;

use crate::kv::{self, Change};

#[derive(Default)]
struct Graph {
    /// uid → key of every live object.
    uids: HashMap<String, String>,
    /// key → uids of its owners.
    owners: HashMap<String, Vec<String>>,
    /// owner uid → keys of its dependents.
    dependents: HashMap<String, HashSet<String>>,
    /// key → object (only those being deleted with a GC finalizer).
    deleting: HashMap<String, Value>,
}

impl Graph {
    fn remove(&mut self, key: &str) {
        if let Some(os) = self.owners.remove(key) {
            for o in os {
                if let Some(d) = self.dependents.get_mut(&o) {
                    d.remove(key);
                }
            }
        }
        self.uids.retain(|_, k| k != key);
        self.deleting.remove(key);
    }

    fn put(&mut self, key: &str, v: &Value) {
        self.remove(key);
        if let Some(uid) = v["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_string(), key.to_string());
        }
        let owners: Vec<String> = v["metadata"]["ownerReferences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["uid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for o in &owners {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(key.to_string());
        }
        if !owners.is_empty() {
            self.owners.insert(key.to_string(), owners);
        }
        let fin = v["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !v["metadata"]["deletionTimestamp"].is_null()
            && fin
                .iter()
                .any(|f| f == "orphan" || f == "foregroundDeletion")
        {
            self.deleting.insert(key.to_string(), v.clone());
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut g = Graph::default();
        let r = match store
            .range(corral_store::RangeRequest {
                prefix: "/registry/".into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("garbage collector: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for kvp in &r.kvs {
            if let Some(v) = registry::decode(kvp) {
                g.put(&kvp.key, &v);
            }
        }
        let Ok(mut watch) = store.watch("/registry/", r.revision).await else {
            continue;
        };
        // Owners already gone when we start.
        let orphans: Vec<String> = g
            .dependents
            .keys()
            .filter(|u| !g.uids.contains_key(*u))
            .cloned()
            .collect();
        for u in orphans {
            owner_gone(&store, &mut g, &u).await;
        }
        loop {
            process_deleting(&store, &g).await;
            tokio::select! {
                ev = watch.events.recv() => {
                    let Some(ev) = ev else { break };
                    handle(&store, &mut g, ev).await;
                    while let Ok(ev) = watch.events.try_recv() {
                        handle(&store, &mut g, ev).await;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(2)), if !g.deleting.is_empty() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn handle(store: &Arc<dyn Store>, g: &mut Graph, ev: Event) {
    match ev {
        Event::Put { kv, .. } => {
            if let Some(v) = registry::decode(&kv) {
                g.put(&kv.key, &v);
                // A dependent made after its owner is gone.
                let gone: Vec<String> = g
                    .owners
                    .get(&kv.key)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|u| !g.uids.contains_key(u))
                    .collect();
                for u in gone {
                    owner_gone(store, g, &u).await;
                }
            }
        }
        Event::Delete { prev, .. } => {
            let uid = registry::decode(&prev)
                .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_string));
            g.remove(&prev.key);
            if let Some(u) = uid {
                owner_gone(store, g, &u).await;
            }
        }
    }
}

/// Deletes the dependents of `uid` that have no other live owner.
async fn owner_gone(store: &Arc<dyn Store>, g: &mut Graph, uid: &str) {
    let deps: Vec<String> = g
        .dependents
        .remove(uid)
        .map(|s| s.into_iter().collect())
        .unwrap_or_default();
    for key in deps {
        let others_alive = g
            .owners
            .get(&key)
            .is_some_and(|os| os.iter().any(|o| o != uid && g.uids.contains_key(o)));
        if others_alive {
            let _ = kv::modify(store, &key, |v| drop_owner(v, uid)).await;
        } else if let Err(e) = kv::delete_like_api(store, &key).await {
            tracing::warn!("garbage collector: deleting {key}: {e}");
        }
    }
}

fn drop_owner(v: &mut Value, uid: &str) -> Change {
    let Some(list) = v["metadata"]["ownerReferences"].as_array_mut() else {
        return Change::Keep;
    };
    let before = list.len();
    list.retain(|o| o["uid"] != uid);
    if list.len() == before {
        return Change::Keep;
    }
    if list.is_empty() {
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
    }
    Change::Write
}

/// Owners being deleted with `orphan` or `foregroundDeletion`.
async fn process_deleting(store: &Arc<dyn Store>, g: &Graph) {
    for (key, v) in &g.deleting {
        let Some(uid) = v["metadata"]["uid"].as_str() else {
            continue;
        };
        let deps: Vec<String> = g
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let fin: Vec<&str> = v["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if fin.contains(&"orphan") {
            for d in &deps {
                let _ = kv::modify(store, d, |x| drop_owner(x, uid)).await;
            }
            let _ = kv::remove_finalizer(store, key, "orphan").await;
        } else if fin.contains(&"foregroundDeletion") {
            if deps.is_empty() {
                let _ = kv::remove_finalizer(store, key, "foregroundDeletion").await;
            } else {
                for d in &deps {
                    let _ = kv::delete_like_api(store, d).await;
                }
            }
        }
    }
}
