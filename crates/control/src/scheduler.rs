//! The scheduler: pods without a node get one.
//!
//! Filters, in order: the node is Ready and schedulable, the pod's `nodeSelector` and
//! required node affinity match its labels, the pod tolerates its `NoSchedule`/`NoExecute`
//! taints, and the pod's requests (CPU, memory, one pod slot) fit what is left of the node's
//! allocatable times the overcommit ratios. Score: bin-packing (the fullest node that fits:
//! consolidation, the default) or spreading (the emptiest). Binding writes `spec.nodeName`
//! and the PodScheduled condition guarded by the pod's revision; a pod that fits nowhere gets
//! PodScheduled False with Kubernetes' message (`0/1 nodes are available: 1 Insufficient
//! memory.`) and a FailedScheduling event, and is tried again when nodes or pods change.
//! Written for many nodes: the nodes and what is bound to them are kept in memory from
//! watches, so a decision reads nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_store::{registry, Event, Store};
use serde_json::{json, Value};

use crate::kv::{self, Change};
use crate::quantity;

/// How to choose among the nodes that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// The fullest node that fits (fewer, busier nodes).
    BinPack,
    /// The emptiest node.
    Spread,
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The scoring.
    pub score: Score,
    /// Allocatable CPU is multiplied by this.
    pub cpu_overcommit: f64,
    /// Allocatable memory is multiplied by this.
    pub memory_overcommit: f64,
    /// The `schedulerName` this scheduler serves.
    pub name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            score: Score::BinPack,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            name: "default-scheduler".into(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct NodeState {
    obj: Value,
    cpu: i64,
    mem: i64,
    pods: i64,
    used_cpu: i64,
    used_mem: i64,
    used_pods: i64,
}

/// A pod's requests: CPU millicores and memory bytes (the larger of the sum of its
/// containers and its largest init container, as Kubernetes counts).
pub fn requests(pod: &Value) -> (i64, i64) {
    let sum = |list: &str, f: &dyn Fn(&str) -> Option<i64>, res: &str| -> Vec<i64> {
        pod["spec"][list]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let r = &c["resources"];
                        r["requests"][res]
                            .as_str()
                            .or(r["limits"][res].as_str())
                            .and_then(f)
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let cpu_c: i64 = sum("containers", &quantity::millis, "cpu").iter().sum();
    let mem_c: i64 = sum("containers", &quantity::bytes, "memory").iter().sum();
    let cpu_i = sum("initContainers", &quantity::millis, "cpu")
        .into_iter()
        .max()
        .unwrap_or(0);
    let mem_i = sum("initContainers", &quantity::bytes, "memory")
        .into_iter()
        .max()
        .unwrap_or(0);
    (cpu_c.max(cpu_i), mem_c.max(mem_i))
}

fn label<'a>(node: &'a Value, k: &str) -> Option<&'a str> {
    node["metadata"]["labels"][k].as_str()
}

/// Whether a label value (`None`: absent) satisfies one selector requirement (`In`,
/// `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`).
pub(crate) fn expr_matches(e: &Value, val: Option<&str>) -> bool {
    let values: Vec<&str> = e["values"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match e["operator"].as_str().unwrap_or("") {
        "In" => val.is_some_and(|v| values.contains(&v)),
        "NotIn" => val.is_none_or(|v| !values.contains(&v)),
        "Exists" => val.is_some(),
        "DoesNotExist" => val.is_none(),
        "Gt" => val
            .and_then(|v| v.parse::<i64>().ok())
            .zip(values.first().and_then(|x| x.parse::<i64>().ok()))
            .is_some_and(|(a, b)| a > b),
        "Lt" => val
            .and_then(|v| v.parse::<i64>().ok())
            .zip(values.first().and_then(|x| x.parse::<i64>().ok()))
            .is_some_and(|(a, b)| a < b),
        _ => false,
    }
}

fn affinity_matches(pod: &Value, node: &Value) -> bool {
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    if terms.is_empty() {
        return true;
    }
    // Terms are ORed; the expressions of one term ANDed.
    terms.iter().any(|t| {
        let exprs = t["matchExpressions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let fields = t["matchFields"].as_array().cloned().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|e| expr_matches(e, label(node, e["key"].as_str().unwrap_or(""))))
            && fields.iter().all(|e| {
                let v = if e["key"] == "metadata.name" {
                    node["metadata"]["name"].as_str()
                } else {
                    None
                };
                expr_matches(e, v)
            })
    })
}

/// Whether `pod` may go to `node` by its node selector, its required node affinity and the
/// node's `NoSchedule`/`NoExecute` taints: what a DaemonSet asks of a node (readiness and
/// room aside).
pub(crate) fn selects_node(pod: &Value, node: &Value) -> bool {
    if let Some(sel) = pod["spec"]["nodeSelector"].as_object() {
        if sel.iter().any(|(k, v)| label(node, k) != v.as_str()) {
            return false;
        }
    }
    affinity_matches(pod, node)
        && node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| {
                !matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute"))
                    || tolerates(pod, t)
            })
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let tols = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    tols.iter().any(|t| {
        let effect_ok = t["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key_ok = t["key"]
            .as_str()
            .is_none_or(|k| k.is_empty() || Some(k) == taint["key"].as_str());
        let op = t["operator"].as_str().unwrap_or("Equal");
        let value_ok = op == "Exists"
            || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        // An empty key with Exists tolerates everything.
        effect_ok && key_ok && value_ok
    })
}

/// Why a node does not fit a pod, in the words of Kubernetes' FailedScheduling message.
fn misfit(cfg: &SchedulerConfig, pod: &Value, n: &NodeState, req: (i64, i64)) -> Option<String> {
    let node = &n.obj;
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    if !ready {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into());
    }
    let cordon = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
    if node["spec"]["unschedulable"] == json!(true) && !tolerates(pod, &cordon) {
        return Some("node(s) were unschedulable".into());
    }
    if let Some(sel) = pod["spec"]["nodeSelector"].as_object() {
        if sel.iter().any(|(k, v)| label(node, k) != v.as_str()) {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    if !affinity_matches(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    for t in node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let effect = t["effect"].as_str().unwrap_or("");
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(pod, &t) {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t["key"].as_str().unwrap_or(""),
                t["value"].as_str().unwrap_or("")
            ));
        }
    }
    if n.used_pods + 1 > n.pods {
        return Some("Too many pods".into());
    }
    if req.0 > 0 && n.used_cpu + req.0 > (n.cpu as f64 * cfg.cpu_overcommit) as i64 {
        return Some("Insufficient cpu".into());
    }
    if req.1 > 0 && n.used_mem + req.1 > (n.mem as f64 * cfg.memory_overcommit) as i64 {
        return Some("Insufficient memory".into());
    }
    None
}

fn score(cfg: &SchedulerConfig, n: &NodeState, req: (i64, i64)) -> f64 {
    let frac = |used: i64, add: i64, cap: i64| {
        if cap <= 0 {
            0.0
        } else {
            (used + add) as f64 / cap as f64
        }
    };
    let fill = (frac(n.used_cpu, req.0, n.cpu)
        + frac(n.used_mem, req.1, n.mem)
        + frac(n.used_pods, 1, n.pods))
        / 3.0;
    match cfg.score {
        Score::BinPack => fill,
        Score::Spread => -fill,
    }
}

/// The scheduler's memory of the cluster.
#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, NodeState>,
    /// Pod key → (node, requests) of bound pods not finished.
    bound: HashMap<String, (String, (i64, i64))>,
    /// Keys of pods waiting for a node.
    pending: HashSet<String>,
    pods: HashMap<String, Value>,
}

impl Cache {
    fn set_node(&mut self, v: Value) {
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let a = &v["status"]["allocatable"];
        let cpu = a["cpu"].as_str().and_then(quantity::millis).unwrap_or(0);
        let mem = a["memory"].as_str().and_then(quantity::bytes).unwrap_or(0);
        let pods = a["pods"].as_str().and_then(quantity::bytes).unwrap_or(110);
        let e = self.nodes.entry(name).or_default();
        e.obj = v;
        (e.cpu, e.mem, e.pods) = (cpu, mem, pods);
    }

    fn unbind(&mut self, key: &str) {
        if let Some((node, (c, m))) = self.bound.remove(key) {
            if let Some(n) = self.nodes.get_mut(&node) {
                n.used_cpu -= c;
                n.used_mem -= m;
                n.used_pods -= 1;
            }
        }
    }

    fn bind(&mut self, key: &str, node: &str, req: (i64, i64)) {
        self.unbind(key);
        if let Some(n) = self.nodes.get_mut(node) {
            n.used_cpu += req.0;
            n.used_mem += req.1;
            n.used_pods += 1;
        }
        self.bound.insert(key.to_string(), (node.to_string(), req));
    }

    /// A VirtualMachine placed on a node holds its memory there (and a tenth of a core per
    /// virtual CPU, KubeVirt's default overcommit), as its launcher pod would on Kubernetes;
    /// the VM placer counts pods the same way, so neither overfills a node the other uses.
    fn set_vm(&mut self, key: &str, v: Option<&Value>) {
        let key = format!("vm:{key}");
        let placed = v.and_then(|v| {
            let node = v["status"]["nodeName"].as_str().filter(|n| !n.is_empty())?;
            let cpus = v["spec"]["cpus"].as_i64().unwrap_or(1).max(1);
            Some((
                node.to_owned(),
                (cpus * 100, crate::virtualmachines::memory_bytes(v)),
            ))
        });
        match placed {
            Some((node, req)) => self.bind(&key, &node, req),
            None => self.unbind(&key),
        }
    }

    fn set_pod(&mut self, cfg: &SchedulerConfig, key: &str, v: Option<Value>) {
        let Some(v) = v else {
            self.unbind(key);
            self.pending.remove(key);
            self.pods.remove(key);
            return;
        };
        let done = matches!(
            v["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        );
        match v["spec"]["nodeName"].as_str() {
            Some(node) if !done => {
                let node = node.to_string();
                self.bind(key, &node, requests(&v));
                self.pending.remove(key);
            }
            Some(_) => {
                self.unbind(key);
                self.pending.remove(key);
            }
            None => {
                let mine = v["spec"]["schedulerName"]
                    .as_str()
                    .unwrap_or("default-scheduler")
                    == cfg.name;
                if mine && v["metadata"]["deletionTimestamp"].is_null() {
                    self.pending.insert(key.to_string());
                } else {
                    self.pending.remove(key);
                }
            }
        }
        self.pods.insert(key.to_string(), v);
    }

    /// The node for a pod (on node `only` if its volumes say so), or the FailedScheduling
    /// message.
    fn choose(
        &self,
        cfg: &SchedulerConfig,
        pod: &Value,
        only: Option<&str>,
    ) -> Result<String, String> {
        let req = requests(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(f64, &str)> = None;
        for (name, n) in &self.nodes {
            let misfit = match only {
                Some(o) if o != name => Some("node(s) had volume node affinity conflict".into()),
                _ => misfit(cfg, pod, n, req),
            };
            match misfit {
                Some(why) => *reasons.entry(why).or_default() += 1,
                None => {
                    let s = score(cfg, n, req);
                    if best.is_none_or(|(b, _)| s > b) {
                        best = Some((s, name));
                    }
                }
            }
        }
        if let Some((_, name)) = best {
            return Ok(name.to_string());
        }
        let mut msg = format!("0/{} nodes are available", self.nodes.len());
        if reasons.is_empty() {
            msg.push_str(": no nodes registered.");
        } else {
            let parts: Vec<String> = reasons
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect();
            msg.push_str(&format!(": {}.", parts.join(", ")));
        }
        Err(msg)
    }
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    cfg: SchedulerConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match run_once(&store, &cfg, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("scheduler: {e}; starting again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn run_once(
    store: &Arc<dyn Store>,
    cfg: &SchedulerConfig,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), corral_store::StoreError> {
    let mut cache = Cache::default();
    let node_prefix = registry::prefix("", "nodes", None);
    let pod_prefix = registry::prefix("", "pods", None);
    let (nodes, rev_n) = kv::list(store, &node_prefix).await?;
    for n in nodes {
        cache.set_node(n);
    }
    let r = store
        .range(corral_store::RangeRequest {
            prefix: pod_prefix.clone(),
            ..Default::default()
        })
        .await?;
    for kvp in &r.kvs {
        cache.set_pod(cfg, &kvp.key, registry::decode(kvp));
    }
    let vm_prefix = registry::prefix("corral.dev", "virtualmachines", None);
    let vms = store
        .range(corral_store::RangeRequest {
            prefix: vm_prefix.clone(),
            ..Default::default()
        })
        .await?;
    for kvv in &vms.kvs {
        cache.set_vm(&kvv.key, registry::decode(kvv).as_ref());
    }
    let mut vm_watch = store.watch(&vm_prefix, vms.revision).await?;
    let mut node_watch = store.watch(&node_prefix, rev_n).await?;
    let mut pod_watch = store.watch(&pod_prefix, r.revision).await?;
    // A claim bound or a volume made can let a waiting pod in.
    let mut claim_watch = store
        .watch(
            &registry::prefix("", "persistentvolumeclaims", None),
            r.revision,
        )
        .await?;
    // Pods told they fit nowhere, and the message they were told (not repeated).
    let mut told: HashMap<String, String> = HashMap::new();
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    loop {
        schedule_pending(store, cfg, &mut cache, &mut told).await;
        tokio::select! {
            ev = pod_watch.events.recv() => {
                let Some(ev) = ev else { return Err(corral_store::StoreError::Backend("pod watch closed".into())) };
                apply(cfg, &mut cache, &ev);
                while let Ok(ev) = pod_watch.events.try_recv() {
                    apply(cfg, &mut cache, &ev);
                }
            }
            ev = node_watch.events.recv() => {
                let Some(ev) = ev else { return Err(corral_store::StoreError::Backend("node watch closed".into())) };
                match ev {
                    Event::Put { kv, .. } => if let Some(v) = registry::decode(&kv) { cache.set_node(v) },
                    Event::Delete { prev, .. } => {
                        if let Some(v) = registry::decode(&prev) {
                            cache.nodes.remove(v["metadata"]["name"].as_str().unwrap_or(""));
                        }
                    }
                }
                told.clear();
            }
            ev = vm_watch.events.recv() => {
                let Some(ev) = ev else { return Err(corral_store::StoreError::Backend("VM watch closed".into())) };
                match ev {
                    Event::Put { kv, .. } => cache.set_vm(&kv.key, registry::decode(&kv).as_ref()),
                    Event::Delete { prev, .. } => cache.set_vm(&prev.key, None),
                }
                told.clear();
            }
            ev = claim_watch.events.recv() => {
                if ev.is_none() { return Err(corral_store::StoreError::Backend("claim watch closed".into())) }
                while claim_watch.events.try_recv().is_ok() {}
                told.clear();
            }
            _ = retry.tick() => told.retain(|k, _| cache.pending.contains(k)),
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

fn apply(cfg: &SchedulerConfig, cache: &mut Cache, ev: &Event) {
    match ev {
        Event::Put { kv, .. } => cache.set_pod(cfg, &kv.key, registry::decode(kv)),
        Event::Delete { prev, .. } => cache.set_pod(cfg, &prev.key, None),
    }
}

/// Binds at most this many pods at once (their writes share commits).
const BIND_CONCURRENCY: usize = 128;

async fn schedule_pending(
    store: &Arc<dyn Store>,
    cfg: &SchedulerConfig,
    cache: &mut Cache,
    told: &mut HashMap<String, String>,
) {
    use futures_util::StreamExt;
    let mut keys: Vec<String> = cache
        .pending
        .iter()
        .filter(|k| !told.contains_key(*k))
        .cloned()
        .collect();
    // Oldest first, as a queue would.
    keys.sort_by_key(|k| {
        cache.pods.get(k).and_then(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        })
    });
    // Decide every pod first, each decision assumed at once (as kube-scheduler assumes a pod
    // before its binding lands), then write the bindings concurrently.
    let mut binds = Vec::new();
    let mut refusals = Vec::new();
    for key in keys {
        let Some(pod) = cache.pods.get(&key).cloned() else {
            continue;
        };
        let claims = match crate::claims::of_pod(store, &pod).await {
            Ok(c) => c,
            Err(msg) => {
                if told.get(&key) != Some(&msg) {
                    told.insert(key.clone(), msg.clone());
                    refusals.push((
                        key,
                        format!("0/{} nodes are available: {msg}.", cache.nodes.len()),
                    ));
                }
                continue;
            }
        };
        match cache.choose(cfg, &pod, claims.node.as_deref()) {
            Ok(node) => {
                cache.bind(&key, &node, requests(&pod));
                cache.pending.remove(&key);
                crate::claims::select_node(store, &claims.waiting, &node).await;
                binds.push((key, node));
            }
            Err(msg) => {
                if told.get(&key) != Some(&msg) {
                    told.insert(key.clone(), msg.clone());
                    refusals.push((key, msg));
                }
            }
        }
    }
    let failed: Vec<String> = futures_util::stream::iter(binds)
        .map(|(key, node)| async move {
            let mut bound = None;
            let res = kv::modify(store, &key, |v| {
                if !v["spec"]["nodeName"].is_null() || !v["metadata"]["deletionTimestamp"].is_null()
                {
                    return Change::Keep;
                }
                v["spec"]["nodeName"] = json!(node);
                set_condition(v, "PodScheduled", "True", None, None);
                bound = Some(v.clone());
                Change::Write
            })
            .await;
            match res {
                Ok(_) => {
                    if let Some(v) = bound {
                        let ns = v["metadata"]["namespace"].as_str().unwrap_or("");
                        let name = v["metadata"]["name"].as_str().unwrap_or("");
                        let msg = format!("Successfully assigned {ns}/{name} to {node}");
                        kv::event(store, &v, "Normal", "Scheduled", &msg, "default-scheduler")
                            .await;
                    }
                    None
                }
                Err(e) => {
                    tracing::warn!("binding {key}: {e}");
                    Some(key)
                }
            }
        })
        .buffer_unordered(BIND_CONCURRENCY)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    for key in failed {
        // The watch brings the pod back as it is; forget the assumption.
        cache.unbind(&key);
        cache.pending.insert(key);
    }
    futures_util::stream::iter(refusals)
        .for_each_concurrent(BIND_CONCURRENCY, |(key, msg)| async move {
            let mut changed = None;
            let _ = kv::modify(store, &key, |v| {
                if !v["spec"]["nodeName"].is_null() {
                    return Change::Keep;
                }
                set_condition(
                    v,
                    "PodScheduled",
                    "False",
                    Some("Unschedulable"),
                    Some(&msg),
                );
                changed = Some(v.clone());
                Change::Write
            })
            .await;
            if let Some(v) = changed {
                kv::event(
                    store,
                    &v,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                )
                .await;
            }
        })
        .await;
}

pub use corral_store::meta::set_condition;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, mem: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"disk": "ssd"}},
               "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod(cpu: &str, mem: &str) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    }

    #[test]
    fn fits_binpacks_and_spreads() {
        let mut cfg = SchedulerConfig::default();
        let mut c = Cache::default();
        c.set_node(node("a", "2", "4Gi"));
        c.set_node(node("b", "2", "4Gi"));
        c.bind("x", "b", (1000, 0));
        assert_eq!(c.choose(&cfg, &pod("500m", "1Gi"), None).unwrap(), "b");
        cfg.score = Score::Spread;
        assert_eq!(c.choose(&cfg, &pod("500m", "1Gi"), None).unwrap(), "a");
        let e = c.choose(&cfg, &pod("1", "8Gi"), None).unwrap_err();
        assert_eq!(e, "0/2 nodes are available: 2 Insufficient memory.");
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let cfg = SchedulerConfig::default();
        let mut c = Cache::default();
        let mut n = node("a", "2", "4Gi");
        n["spec"] = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]});
        c.set_node(n);
        let mut p = pod("1", "1Gi");
        assert!(c
            .choose(&cfg, &p, None)
            .unwrap_err()
            .contains("untolerated taint {gpu: yes}"));
        p["spec"]["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
        assert_eq!(c.choose(&cfg, &p, None).unwrap(), "a");
        p["spec"]["nodeSelector"] = json!({"disk": "hdd"});
        assert!(c
            .choose(&cfg, &p, None)
            .unwrap_err()
            .contains("affinity/selector"));
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}});
        assert!(c.choose(&cfg, &p, None).is_err());
        // A pod whose volume lives on a node goes there or nowhere.
        let p = pod("1", "1Gi");
        let e = c.choose(&cfg, &p, Some("nowhere")).unwrap_err();
        assert!(e.contains("volume node affinity conflict"), "{e}");
    }

    #[test]
    fn placed_vms_hold_their_memory() {
        let cfg = SchedulerConfig::default();
        let mut c = Cache::default();
        c.set_node(node("a", "2", "4Gi"));
        let vm = json!({"spec": {"cpus": 2, "memory": "3Gi"}, "status": {"nodeName": "a"}});
        c.set_vm("/vms/x", Some(&vm));
        let e = c.choose(&cfg, &pod("100m", "2Gi"), None).unwrap_err();
        assert_eq!(e, "0/1 nodes are available: 1 Insufficient memory.");
        assert_eq!(c.choose(&cfg, &pod("100m", "1Gi"), None).unwrap(), "a");
        // Not yet placed, then gone: it holds nothing.
        c.set_vm("/vms/x", Some(&json!({"spec": {"memory": "3Gi"}})));
        assert_eq!(c.choose(&cfg, &pod("100m", "2Gi"), None).unwrap(), "a");
        c.set_vm("/vms/x", Some(&vm));
        c.set_vm("/vms/x", None);
        assert_eq!(c.choose(&cfg, &pod("100m", "2Gi"), None).unwrap(), "a");
    }

    #[test]
    fn init_containers_count_by_their_largest() {
        let p = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}}}], "initContainers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(requests(&p), (1000, 0));
    }
}
