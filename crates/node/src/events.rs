//! Events about pods, as the kubelet records them (`source.component: kubelet`): `Pulling`,
//! `Pulled`, `Created`, `Started`, `Killing`, `BackOff`, `Failed`, `Unhealthy`,
//! `FailedMount`.
//!
//! Each event is an object at `/registry/core/events/NS/POD.<16 hex>` attached to a store
//! lease of an hour, so the store drops it by itself; one lease serves every event of the same
//! hour (granting one per event would cost a lease each). A repeat of the same event (same
//! object, field path, reason and message) bumps `count` and `lastTimestamp` of the one
//! recorded, as the kubelet's event correlator does, instead of making another.
//!
//! Recording never fails the caller: a store error is logged and the event dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use corral_store::{registry, LeaseId, Store, StoreError};
use serde_json::{json, Value};

use crate::{clock, kv};

/// How long an event lives, seconds.
pub const EVENT_TTL: i64 = 3600;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

/// The object an event is about: a pod, or a VirtualMachine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `Pod` or `VirtualMachine`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    field_path: String,
    reason: String,
    message: String,
}

/// Records events into the store.
pub(crate) struct Recorder {
    store: Arc<dyn Store>,
    node: String,
    lease: tokio::sync::Mutex<Option<(u64, LeaseId)>>,
    seen: std::sync::Mutex<HashMap<Key, String>>,
}

impl Recorder {
    pub fn new(store: Arc<dyn Store>, node: String) -> Recorder {
        Recorder {
            store,
            node,
            lease: Default::default(),
            seen: Default::default(),
        }
    }

    /// Records an event (or counts a repeat of one).
    pub async fn record(
        &self,
        pod: &PodRef,
        field_path: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(e) = self
            .try_record(pod, field_path, kind, reason, message)
            .await
        {
            tracing::warn!(pod = %pod.name, namespace = %pod.namespace, reason, "recording an event: {e}");
        }
    }

    async fn try_record(
        &self,
        pod: &PodRef,
        field_path: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let k = Key {
            uid: pod.uid.clone(),
            field_path: field_path.unwrap_or_default().to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        let now = clock::now();
        let existing = self.seen.lock().expect("events lock").get(&k).cloned();
        if let Some(name) = existing {
            let key = registry::key("", "events", Some(&pod.namespace), &name);
            let updated = kv::update(&*self.store, &key, |v| {
                let count = v["count"].as_i64().unwrap_or(1);
                v["count"] = json!(count + 1);
                v["lastTimestamp"] = json!(now);
                true
            })
            .await?;
            if updated.is_some() {
                return Ok(());
            }
            // Expired with its lease: a new one.
        }
        let name = format!("{}.{}", pod.name, clock::random_hex(8));
        let mut involved = json!({
            "kind": pod.kind,
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "apiVersion": if pod.kind == "Pod" { "v1" } else { "corral.dev/v1" },
        });
        if let Some(f) = field_path {
            involved["fieldPath"] = json!(f);
        }
        let ev: Value = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": pod.namespace,
                "uid": clock::uuid(),
                "creationTimestamp": now,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        });
        let key = registry::key("", "events", Some(&pod.namespace), &name);
        let mut lease = self.lease(false).await?;
        match kv::create(&*self.store, &key, &ev, lease).await {
            Err(StoreError::LeaseNotFound(_)) => {
                lease = self.lease(true).await?;
                kv::create(&*self.store, &key, &ev, lease).await?;
            }
            r => {
                r?;
            }
        }
        let mut seen = self.seen.lock().expect("events lock");
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(k, name);
        Ok(())
    }

    /// The lease of this hour's events (a new one when the hour turned, or `fresh`).
    async fn lease(&self, fresh: bool) -> Result<LeaseId, StoreError> {
        let bucket = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / EVENT_TTL as u64;
        let mut l = self.lease.lock().await;
        match *l {
            Some((b, id)) if b == bucket && !fresh => Ok(id),
            _ => {
                let id = self.store.lease_grant(EVENT_TTL).await?;
                *l = Some((bucket, id));
                Ok(id)
            }
        }
    }

    /// Forgets a pod's events (it is gone).
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .expect("events lock")
            .retain(|k, _| k.uid != uid);
    }
}
