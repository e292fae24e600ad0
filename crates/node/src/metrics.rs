//! Resource metrics, as metrics-server gives them to `kubectl top` and autoscalers: every
//! [`PERIOD`] the agent reads the CPU time and memory of its pods' running containers (their
//! cgroups, through the engine) and of the node (`/proc/stat`, `/proc/meminfo`), and writes
//! `metrics.k8s.io/v1beta1` PodMetrics and NodeMetrics into the store under the agent's own
//! lease (60 s), where the API server serves them read-only.
//!
//! CPU is a rate over the period between two readings (in nanocores), memory the working set
//! (usage without the page cache the kernel can drop, as the engine's `stats` reads it). A
//! pod's metrics appear from its second reading on and go when the pod does; if the agent
//! stops, its lease runs out and they all go.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_store::{registry, LeaseId};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::runtime;
use crate::{blocking, NodeAgent};

/// How often usage is read.
pub const PERIOD: Duration = Duration::from_secs(10);
/// The lease the metrics live under.
const LEASE_TTL: i64 = 60;

/// One reading: per container id, (pod uid, container name, cpu ns, memory bytes, when).
type Reading = HashMap<String, (String, String, u64, u64, Instant)>;

/// The node's CPU time (nanoseconds, all CPUs) and working-set memory.
fn node_usage() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: u64 = cpu
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    let hz = 100; // USER_HZ on Linux
    let mem = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |k: &str| -> u64 {
        mem.lines()
            .find_map(|l| {
                l.strip_prefix(k)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let used = kb("MemTotal:").saturating_sub(kb("MemAvailable:")) * 1024;
    Some((busy * 1_000_000_000 / hz, used))
}

fn cpu_quantity(ns: u64, wall: Duration) -> String {
    let secs = wall.as_secs_f64();
    let nanocores = if secs > 0.0 {
        (ns as f64 / secs) as u64
    } else {
        0
    };
    format!("{nanocores}n")
}

fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

impl NodeAgent {
    /// Reads and writes metrics every [`PERIOD`] until `shutdown` turns true.
    pub(crate) async fn metrics(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut lease: LeaseId = 0;
        let mut before: Reading = HashMap::new();
        let mut node_before: Option<((u64, u64), Instant)> = None;
        let mut written: HashSet<String> = HashSet::new();
        // The first two readings a second apart, so that metrics come soon after a start.
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            wait = PERIOD;
            let now = match blocking(&self.engine, read_containers).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("reading container usage: {e}");
                    continue;
                }
            };
            let node_now = node_usage().map(|u| (u, Instant::now()));
            if lease == 0 || self.store.lease_keepalive(lease).await.is_err() {
                match self.store.lease_grant(LEASE_TTL).await {
                    Ok(l) => {
                        lease = l;
                        written.clear();
                    }
                    Err(e) => {
                        tracing::debug!("metrics lease: {e}");
                        continue;
                    }
                }
            }
            let Ok((mine, _)) = self.list_mine().await else {
                continue;
            };
            let stamp = corral_store::meta::now();
            let window = format!("{}s", PERIOD.as_secs());
            let mut keep: HashSet<String> = HashSet::new();
            for (uid, pod) in &mine {
                let mut containers = Vec::new();
                for (id, (puid, cname, cpu, mem, at)) in &now {
                    if puid != uid {
                        continue;
                    }
                    let Some((_, _, cpu0, _, at0)) = before.get(id) else {
                        continue;
                    };
                    containers.push(json!({"name": cname, "usage": {
                        "cpu": cpu_quantity(cpu.saturating_sub(*cpu0), at.duration_since(*at0)),
                        "memory": memory_quantity(*mem),
                    }}));
                }
                if containers.is_empty() {
                    continue;
                }
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                let name = pod["metadata"]["name"].as_str().unwrap_or("");
                let mut meta = json!({"name": name, "namespace": ns, "creationTimestamp": stamp});
                if pod["metadata"]["labels"].is_object() {
                    meta["labels"] = pod["metadata"]["labels"].clone();
                }
                let v = json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                    "metadata": meta, "timestamp": stamp, "window": window, "containers": containers});
                let key = registry::key("metrics.k8s.io", "pods", Some(ns), name);
                self.put(&key, &v, lease).await;
                keep.insert(key);
            }
            if let (Some(((cpu, mem), at)), Some(((cpu0, _), at0))) = (node_now, node_before) {
                let node = &self.cfg.node_name;
                let v = json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics",
                    "metadata": {"name": node, "creationTimestamp": stamp,
                        "labels": {"kubernetes.io/hostname": node}},
                    "timestamp": stamp, "window": window,
                    "usage": {"cpu": cpu_quantity(cpu.saturating_sub(cpu0), at.duration_since(at0)),
                        "memory": memory_quantity(mem)}});
                let key = registry::key("metrics.k8s.io", "nodes", None, node);
                self.put(&key, &v, lease).await;
                keep.insert(key);
            }
            for gone in written.difference(&keep) {
                if let Ok(Some(kv)) = self.store.get(gone).await {
                    let _ = self.store.delete(gone, kv.mod_revision).await;
                }
            }
            written = keep;
            before = now;
            node_before = node_now.or(node_before);
        }
    }

    /// Creates or replaces `key` (under `lease` when it is created).
    async fn put(&self, key: &str, v: &Value, lease: LeaseId) {
        let body = registry::encode(v);
        match self.store.get(key).await {
            Ok(Some(kv)) if kv.lease == lease => {
                let _ = self.store.update(key, body, kv.mod_revision).await;
            }
            Ok(Some(kv)) => {
                // Under an older lease: made again under this one.
                let _ = self.store.delete(key, kv.mod_revision).await;
                let _ = self.store.create(key, body, lease).await;
            }
            Ok(None) => {
                let _ = self.store.create(key, body, lease).await;
            }
            Err(_) => {}
        }
    }
}

/// Reads the usage of every running container of a Kubernetes pod (blocking).
fn read_containers(engine: &corral_engine::Engine) -> corral_engine::Result<Reading> {
    let scan = runtime::scan(engine)?;
    let mut ids = Vec::new();
    let mut owner: HashMap<String, (String, String)> = HashMap::new();
    for (uid, runs) in &scan.containers {
        for r in runs.iter().filter(|r| !r.init) {
            ids.push(r.id.clone());
            owner.insert(r.id.clone(), (uid.clone(), r.container.clone()));
        }
    }
    let mut out = Reading::new();
    for s in engine.sample(&ids)? {
        if let Some((uid, name)) = owner.remove(&s.id) {
            out.insert(s.id.clone(), (uid, name, s.cpu_ns, s.memory, s.at));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_metrics_server_writes_them() {
        assert_eq!(
            cpu_quantity(500_000_000, Duration::from_secs(1)),
            "500000000n"
        );
        assert_eq!(
            cpu_quantity(1_000_000_000, Duration::from_secs(10)),
            "100000000n"
        );
        assert_eq!(cpu_quantity(5, Duration::ZERO), "0n");
        assert_eq!(memory_quantity(10 * 1024 * 1024), "10240Ki");
        assert!(node_usage().is_some());
    }
}
