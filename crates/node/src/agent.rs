//! The agent's main loop: the Node's heartbeat, the reaper, and the pods — listed, then
//! watched from the list's revision (a closed or compacted watch lists again), each pod bound
//! to this node handed to its worker (one task per pod uid, fed the pod's latest object
//! through a watch channel; `None` when the pod is gone from the store).
//!
//! At start, before the first pod is synced, the engine is scanned for what earlier agents
//! made (`runtime::scan`): the runs of pods still in the store are adopted by their workers,
//! engine pods and containers of pods that are gone are removed with their volumes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_store::{registry, Event, RangeRequest, Revision, StoreError};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::sync::watch;

use crate::runtime::{self, Scan};
use crate::worker::Worker;
use crate::{blocking, volumes, NodeAgent};

struct Handle {
    tx: watch::Sender<Option<Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeAgent {
    /// Runs the agent until `shutdown` turns true: registers the Node, keeps its Lease,
    /// and runs the pods bound to this node. Pods keep running when it returns (the next
    /// agent adopts them).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(node = %self.cfg.node_name, root = %self.engine.root().display(), "node agent starting");
        let heartbeat = tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let reclaim = tokio::spawn(self.clone().reclaim_volumes(shutdown.clone()));
        let metrics = tokio::spawn(self.clone().metrics(shutdown.clone()));
        let vms = tokio::spawn(self.clone().run_vms(shutdown.clone()));
        let reaper = {
            let agent = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    agent.reaper.reap();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        let mut scan = loop {
            match blocking(&self.engine, runtime::scan).await {
                Ok(s) => break Some(s),
                Err(e) => {
                    tracing::warn!("reading the engine's pods: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => break None,
                    }
                }
            }
        };
        let mut workers: HashMap<String, Handle> = HashMap::new();
        let mut finished: HashSet<String> = HashSet::new();
        let prefix = registry::prefix("", "pods", None);
        let mut first = true;
        'list: while scan.is_some() && !*shutdown.borrow() {
            let (mine, rev) = match self.list_mine().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("listing pods: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'list,
                        _ = shutdown.changed() => break 'list,
                    }
                }
            };
            if first {
                first = false;
                if let Some(s) = scan.as_mut() {
                    self.remove_orphans(s, &mine).await;
                }
            }
            let uids: HashSet<String> = mine.iter().map(|(u, _)| u.clone()).collect();
            for (uid, v) in mine {
                self.dispatch(&mut workers, &mut finished, scan.as_mut(), uid, Some(v));
            }
            let gone: Vec<String> = workers
                .keys()
                .filter(|u| !uids.contains(*u))
                .cloned()
                .collect();
            for uid in gone {
                self.dispatch(&mut workers, &mut finished, None, uid, None);
            }
            let mut w = match self.store.watch(&prefix, rev).await {
                Ok(w) => w,
                Err(StoreError::Compacted { .. }) => continue 'list,
                Err(e) => {
                    tracing::warn!("watching pods: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'list;
                }
            };
            let mut tidy = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    ev = w.events.recv() => {
                        let Some(ev) = ev else { continue 'list };
                        match ev {
                            Event::Put { kv, .. } => {
                                let Some(v) = registry::decode(&kv) else { continue };
                                let uid = v["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                                if self.bound_here(&v) {
                                    self.dispatch(&mut workers, &mut finished, scan.as_mut(), uid, Some(v));
                                } else if workers.contains_key(&uid) {
                                    self.dispatch(&mut workers, &mut finished, None, uid, None);
                                }
                            }
                            Event::Delete { prev, .. } => {
                                let uid = registry::decode(&prev)
                                    .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_owned))
                                    .unwrap_or_default();
                                finished.remove(&uid);
                                self.dispatch(&mut workers, &mut finished, None, uid, None);
                            }
                        }
                    }
                    _ = tidy.tick() => {
                        workers.retain(|uid, h| {
                            if h.task.is_finished() {
                                finished.insert(uid.clone());
                                false
                            } else {
                                true
                            }
                        });
                        if finished.len() > 10_000 {
                            finished.clear();
                        }
                    }
                    _ = shutdown.changed() => break 'list,
                }
            }
        }
        // Stopping: the workers end without touching what runs.
        let tasks: Vec<_> = workers.into_values().map(|h| h.task).collect();
        for t in tasks {
            let _ = t.await;
        }
        let _ = heartbeat.await;
        let _ = metrics.await;
        let _ = vms.await;
        let _ = reaper.await;
        let _ = reclaim.await;
        tracing::info!(node = %self.cfg.node_name, "node agent stopped");
    }

    fn bound_here(&self, v: &Value) -> bool {
        v["spec"]["nodeName"].as_str() == Some(self.cfg.node_name.as_str())
    }

    /// The pods bound to this node (uid, object), and the revision of the read.
    pub(crate) async fn list_mine(&self) -> Result<(Vec<(String, Value)>, Revision), StoreError> {
        let r = self
            .store
            .range(RangeRequest {
                prefix: registry::prefix("", "pods", None),
                ..Default::default()
            })
            .await?;
        let mine = r
            .kvs
            .iter()
            .filter_map(registry::decode)
            .filter(|v| self.bound_here(v))
            .filter_map(|v| {
                let uid = v["metadata"]["uid"].as_str()?.to_owned();
                Some((uid, v))
            })
            .collect();
        Ok((mine, r.revision))
    }

    /// Hands a pod's latest object to its worker (`None`: gone), making the worker if
    /// needed; `scan` holds what it adopts.
    fn dispatch(
        self: &Arc<Self>,
        workers: &mut HashMap<String, Handle>,
        finished: &mut HashSet<String>,
        scan: Option<&mut Scan>,
        uid: String,
        obj: Option<Value>,
    ) {
        if uid.is_empty() {
            return;
        }
        if let Some(h) = workers.get(&uid) {
            if !h.task.is_finished() {
                let _ = h.tx.send(obj);
                return;
            }
            workers.remove(&uid);
            finished.insert(uid.clone());
        }
        let Some(v) = obj else { return };
        if finished.contains(&uid) {
            // Its worker finished it (deleted it): what comes now is older news.
            return;
        }
        let pod: Pod = match serde_json::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(uid = %uid, "a pod the agent cannot read: {e}");
                return;
            }
        };
        let (engine_pod, adopted) = match scan {
            Some(s) => (
                s.pods.remove(&uid).map(|(id, _, _)| id),
                s.containers.remove(&uid).unwrap_or_default(),
            ),
            None => (None, Vec::new()),
        };
        if engine_pod.is_some() || !adopted.is_empty() {
            tracing::info!(pod = ?pod.metadata.name, namespace = ?pod.metadata.namespace, runs = adopted.len(), "adopting a running pod");
        }
        let worker = Worker::new(self.clone(), v.clone(), pod, engine_pod, adopted);
        let (tx, rx) = watch::channel(Some(v));
        let task = tokio::spawn(worker.run(rx));
        workers.insert(uid, Handle { tx, task });
    }

    /// Removes engine pods and containers of pods no longer in the store (once, at start).
    async fn remove_orphans(&self, scan: &mut Scan, mine: &[(String, Value)]) {
        let keep: HashSet<&str> = mine.iter().map(|(u, _)| u.as_str()).collect();
        let pods: Vec<(String, String)> = scan
            .pods
            .iter()
            .filter(|(u, _)| !keep.contains(u.as_str()))
            .map(|(u, (id, _, _))| (u.clone(), id.clone()))
            .collect();
        let containers: Vec<String> = scan
            .containers
            .iter()
            .filter(|(u, _)| !keep.contains(u.as_str()))
            .flat_map(|(_, runs)| runs.iter().map(|r| r.id.clone()))
            .collect();
        let uids: Vec<String> = scan
            .pods
            .keys()
            .chain(scan.containers.keys())
            .filter(|u| !keep.contains(u.as_str()))
            .cloned()
            .collect();
        scan.pods.retain(|u, _| keep.contains(u.as_str()));
        scan.containers.retain(|u, _| keep.contains(u.as_str()));
        let root = self.engine.root().to_path_buf();
        // Volume directories of pods that are gone, with or without an engine pod.
        let mut uids = uids;
        if let Ok(rd) = std::fs::read_dir(root.join("kubelet").join("pods")) {
            for e in rd.flatten() {
                let u = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(u.as_str()) && !uids.contains(&u) {
                    uids.push(u);
                }
            }
        }
        if pods.is_empty() && containers.is_empty() && uids.is_empty() {
            return;
        }
        blocking(&self.engine, move |e| {
            for (uid, id) in pods {
                tracing::info!(uid = %uid, "removing an engine pod whose pod is gone");
                if let Err(err) = e.remove_pod(&id, true) {
                    tracing::warn!(uid = %uid, "removing an orphaned engine pod: {err}");
                }
            }
            for id in containers {
                if e.containers().is_ok_and(|cs| cs.exists(&id)) {
                    let _ = e.remove(&id, true, true);
                }
            }
            for uid in uids {
                let _ = volumes::teardown(&volumes::pod_dir(&root, &uid));
            }
        })
        .await;
    }
}
