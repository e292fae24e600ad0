//! A pod's end. Graceful deletion (the pod has `metadata.deletionTimestamp`): each running
//! container runs its preStop hook (`hooks`), then is stopped with SIGTERM, then SIGKILL after
//! the grace period
//! (`metadata.deletionGracePeriodSeconds`, else `spec.terminationGracePeriodSeconds`, else
//! 30 s — the engine's stop with a timeout does both), the engine pod and the pod's volume
//! directory are removed, and the pod's key is deleted, guarded by the revision it was read
//! at, once `metadata.finalizers` is empty (while it is not, the agent writes the final
//! status and leaves the key to whoever removes the last finalizer). A pod whose key is gone
//! from the store (forced deletion, or gone while the agent was down) is removed at once.

use corral_store::{registry, StoreError};

use crate::events::EventType;
use crate::worker::Worker;
use crate::{blocking, volumes};

impl Worker {
    /// Graceful deletion; marks the worker done once the key is gone.
    pub(crate) async fn terminate(&mut self) {
        let meta = &self.pod.metadata;
        let grace = meta
            .deletion_grace_period_seconds
            .or(self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64;
        self.refresh().await;
        let mut stops = Vec::new();
        let mut names = Vec::new();
        for (name, slot) in &mut self.slots {
            slot.probes = None;
            if let Some(k) = slot.killing.take() {
                k.abort();
            }
            let Some(cur) = &slot.current else { continue };
            if cur.state.status != corral_container::Status::Running {
                continue;
            }
            names.push(name.clone());
            // The container's preStop hook first, within the grace period.
            let hook = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == *name))
                .and_then(crate::hooks::pre_stop_of);
            let (n, id) = (name.as_str(), cur.id.as_str());
            stops.push(crate::hooks::spawn_stop(
                &self.agent,
                &self.pod_ref,
                self.pod_ip,
                (n, id),
                hook,
                grace,
            ));
        }
        for n in &names {
            let m = format!("Stopping container {n}");
            self.event(Some(n), EventType::Normal, "Killing", &m).await;
        }
        for s in stops {
            let _ = s.await;
        }
        if !names.is_empty() || !self.terminal {
            self.refresh().await;
            let all_ok = self.slots.values().filter(|s| !s.init).all(|s| {
                s.current
                    .as_ref()
                    .is_some_and(|i| i.state.exit_code == Some(0))
            });
            self.terminal = true;
            let finalizers = self
                .pod
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty());
            if finalizers {
                let phase = if all_ok { "Succeeded" } else { "Failed" };
                self.write_status_with(Some(phase)).await;
            }
        }
        self.remove_engine().await;
        match self.delete_key().await {
            Ok(done) => self.done = done,
            Err(e) => {
                tracing::warn!(pod = %self.name, namespace = %self.ns, "deleting the pod: {e}")
            }
        }
    }

    /// Deletes the pod's key if it has no finalizers; whether it is gone.
    async fn delete_key(&self) -> Result<bool, StoreError> {
        loop {
            let Some(kv) = self.agent.store.get(&self.key).await? else {
                return Ok(true);
            };
            let Some(v) = registry::decode(&kv) else {
                return Ok(true);
            };
            if v["metadata"]["uid"].as_str() != Some(self.uid.as_str()) {
                // Another pod of that name now.
                return Ok(true);
            }
            if v["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                return Ok(false);
            }
            match self.agent.store.delete(&self.key, kv.mod_revision).await {
                Ok(_) => {
                    tracing::info!(pod = %self.name, namespace = %self.ns, "pod deleted");
                    return Ok(true);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the engine pod, any run of the pod's containers left outside it, and the
    /// pod's volumes.
    pub(crate) async fn remove_engine(&mut self) {
        let pod = self.engine_pod.take();
        let runs: Vec<String> = self
            .slots
            .values_mut()
            .flat_map(|s| [s.current.take(), s.previous.take()])
            .flatten()
            .map(|i| i.id)
            .collect();
        let dir = volumes::pod_dir(self.agent.engine.root(), &self.uid);
        let name = self.name.clone();
        let engine_name = crate::runtime::pod_name(&self.ns, &self.name, &self.uid);
        let uid = self.uid.clone();
        blocking(&self.agent.engine, move |e| {
            // The one it made, else one of its name and uid (made by an earlier worker).
            let pod = pod.or_else(|| {
                e.resolve_pod(&engine_name)
                    .ok()
                    .filter(|p| p.labels.get(crate::runtime::LABEL_POD_UID) == Some(&uid))
                    .map(|p| p.id)
            });
            if let Some(id) = pod {
                if let Err(err) = e.remove_pod(&id, true) {
                    if !matches!(err, corral_engine::EngineError::NotFound(_)) {
                        tracing::warn!(pod = %name, "removing the engine pod: {err}");
                    }
                }
            }
            for id in runs {
                if e.containers().is_ok_and(|cs| cs.exists(&id)) {
                    let _ = e.remove(&id, true, true);
                }
            }
            if let Err(err) = volumes::teardown(&dir) {
                tracing::warn!(pod = %name, "removing the pod's volumes: {err}");
            }
        })
        .await;
        self.pod_ip = None;
    }

    /// The pod is gone from the store: everything of it goes now.
    pub(crate) async fn remove_gone(&mut self) {
        for slot in self.slots.values_mut() {
            slot.probes = None;
            if let Some(k) = slot.killing.take() {
                k.abort();
            }
        }
        self.remove_engine().await;
        self.done = true;
    }
}
