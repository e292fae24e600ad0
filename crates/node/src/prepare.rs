//! A pod worker's preparations before its containers start: the engine pod (its sandbox, in
//! a VM when the RuntimeClass says so), the ConfigMaps, Secrets and claims its environment and
//! volumes read, and the volumes made on the host.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use corral_engine::spec::Isolation;
use corral_store::registry;

use crate::events::EventType;
use crate::worker::{Worker, VOLUME_RESYNC};
use crate::{blocking, env, kv, runtime, volumes};

impl Worker {
    /// Makes sure the engine pod runs; its address. `false` if it cannot (the reason is in
    /// `sandbox_error`).
    pub(crate) async fn ensure_sandbox(&mut self) -> bool {
        let spec = self.pod.spec.clone().unwrap_or_default();
        if spec.host_network == Some(true) {
            let msg = "hostNetwork pods are not supported by corral's node agent".to_owned();
            if self.sandbox_error.as_deref() != Some(&msg) {
                self.event(None, EventType::Warning, "FailedCreatePodSandBox", &msg)
                    .await;
            }
            self.sandbox_error = Some(msg);
            return false;
        }
        let isolation = match self.isolation(&spec).await {
            Ok(i) => i,
            Err(msg) => {
                if self.sandbox_error.as_deref() != Some(&msg) {
                    self.event(None, EventType::Warning, "FailedCreatePodSandBox", &msg)
                        .await;
                }
                self.sandbox_error = Some(msg);
                return false;
            }
        };
        self.vm = isolation == Isolation::Vm;
        let name = runtime::pod_name(&self.ns, &self.name, &self.uid);
        let engine_spec =
            crate::runspec::engine_pod(&self.pod, &name, &self.agent.cfg.network, isolation);
        let existing = self.engine_pod.clone();
        let uid = self.uid.clone();
        let network = self.agent.cfg.network.clone();
        let r = blocking(&self.agent.engine, move |e| -> Result<_, String> {
            let chain = |err: corral_engine::EngineError| corral_engine::containers::chain(&err);
            let mut pod = existing.and_then(|id| e.pod(&id).ok());
            if pod.is_none() {
                if let Ok(p) = e.resolve_pod(&name) {
                    if p.labels.get(runtime::LABEL_POD_UID) == Some(&uid) {
                        pod = Some(p);
                    } else {
                        // A pod of that name from another object: not ours to keep.
                        e.remove_pod(&p.id, true).map_err(chain)?;
                    }
                }
            }
            let pod = match pod {
                Some(p) => p,
                None => e.create_pod(&engine_spec).map_err(chain)?,
            };
            let pod = if pod.running() {
                pod
            } else {
                e.start_pod(&pod.id).map_err(chain)?
            };
            // A VM pod's address is its VM's.
            let holder = pod.vm.clone().unwrap_or_else(|| pod.id.clone());
            let ip = e
                .networks()
                .endpoint(&network, &holder)
                .ok()
                .flatten()
                .map(|ep| IpAddr::V4(ep.ip));
            Ok((pod.id.clone(), ip, pod.sandbox.map(|s| s.pid)))
        })
        .await;
        match r {
            Ok((id, ip, pid)) => {
                if let Some(pid) = pid {
                    self.agent.reaper.watch(pid);
                }
                self.engine_pod = Some(id);
                self.pod_ip = ip;
                self.sandbox_error = None;
                true
            }
            Err(msg) => {
                let msg = format!("Failed to create pod sandbox: {msg}");
                if self.sandbox_error.as_deref() != Some(&msg) {
                    self.event(None, EventType::Warning, "FailedCreatePodSandBox", &msg)
                        .await;
                }
                self.sandbox_error = Some(msg);
                false
            }
        }
    }

    /// The isolation the pod's RuntimeClass asks for (none: a container pod).
    pub(crate) async fn isolation(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Result<Isolation, String> {
        use crate::runspec::{HANDLER_CONTAINER, HANDLER_VM};
        let Some(rc) = spec.runtime_class_name.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(Isolation::Container);
        };
        let key = registry::key("node.k8s.io", "runtimeclasses", None, rc);
        let handler = match kv::get(&*self.agent.store, &key).await {
            Ok(Some((v, _))) => v["handler"].as_str().unwrap_or("").to_string(),
            Ok(None) => return Err(format!("RuntimeClass \"{rc}\" not found")),
            Err(e) => return Err(format!("reading RuntimeClass \"{rc}\": {e}")),
        };
        match handler.as_str() {
            HANDLER_CONTAINER => Ok(Isolation::Container),
            HANDLER_VM => Ok(Isolation::Vm),
            h => Err(format!(
                "RuntimeClass \"{rc}\" has handler \"{h}\", which this node does not run (its handlers are {HANDLER_CONTAINER} and {HANDLER_VM})"
            )),
        }
    }

    /// The ConfigMaps and Secrets named, read from the pod's namespace, and what the pod's
    /// claims mount.
    pub async fn sources(
        &self,
        cms: impl IntoIterator<Item = String>,
        secrets: impl IntoIterator<Item = String>,
    ) -> Result<env::Sources, corral_store::StoreError> {
        let mut out = env::Sources::default();
        for n in cms {
            let key = registry::key("", "configmaps", Some(&self.ns), &n);
            let data = kv::get(&*self.agent.store, &key).await?.and_then(|(v, _)| {
                let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(v).ok()?;
                let mut d: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                d.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                Some(d)
            });
            out.configmaps.insert(n, data);
        }
        for n in secrets {
            let key = registry::key("", "secrets", Some(&self.ns), &n);
            let data = kv::get(&*self.agent.store, &key).await?.and_then(|(v, _)| {
                let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(v).ok()?;
                let mut d: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                d.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                Some(d)
            });
            out.secrets.insert(n, data);
        }
        for v in self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
        {
            if let Some(c) = &v.persistent_volume_claim {
                let src = crate::claims::resolve(&*self.agent.store, &self.ns, &c.claim_name).await;
                out.claims.insert(c.claim_name.clone(), src);
            }
        }
        Ok(out)
    }

    pub fn field_context(&self) -> env::FieldContext {
        env::FieldContext {
            pod_ip: self.pod_ip.map(|i| i.to_string()),
            host_ip: self.agent.host.ip.to_string(),
            node_cpus: self.agent.cfg.cpus.unwrap_or(self.agent.host.cpus) as f64,
            node_memory: self
                .agent
                .cfg
                .memory
                .unwrap_or(self.agent.host.memory_kib * 1024),
        }
    }

    /// Makes the pod's volumes (and rewrites those from the store now and then). `false`
    /// while they cannot be made.
    pub(crate) async fn ensure_volumes(&mut self) -> bool {
        let fresh = self
            .volumes_synced
            .is_some_and(|t| t.elapsed() < VOLUME_RESYNC);
        if self.prepared.is_some() && fresh {
            return true;
        }
        let (cms, secrets) = volumes::referenced(&self.pod);
        let sources = match self.sources(cms, secrets).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pod = %self.name, "reading the pod's volume sources: {e}");
                return self.prepared.is_some();
            }
        };
        let dir = volumes::pod_dir(self.agent.engine.root(), &self.uid);
        let pod = self.pod.clone();
        let ctx = self.field_context();
        let r =
            tokio::task::spawn_blocking(move || volumes::materialize(&dir, &pod, &sources, &ctx))
                .await
                .unwrap_or_else(|e| {
                    Err(volumes::VolumeError {
                        volume: String::new(),
                        message: e.to_string(),
                    })
                });
        self.volumes_synced = Some(Instant::now());
        match r {
            Ok(p) => {
                self.prepared = Some(p);
                self.volume_error = None;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                if self.volume_error.as_deref() != Some(&msg) {
                    self.event(None, EventType::Warning, "FailedMount", &msg)
                        .await;
                }
                self.volume_error = Some(msg);
                self.prepared.is_some()
            }
        }
    }
}
