//! The HorizontalPodAutoscaler controller: a Deployment's, ReplicaSet's or StatefulSet's
//! replicas follow its pods' CPU or memory use, with Kubernetes' algorithm.
//!
//! Every [`SYNC`] (Kubernetes' is 15 s) each autoscaler reads its target's `/scale`, the
//! pods its selector matches (less those being deleted, failed or finished), and their
//! `metrics.k8s.io` PodMetrics (written by the node agents). Per metric:
//! - `Utilization`: usage as a percentage of the pods' requests; a pod without a request for
//!   the resource makes the metric fail (condition ScalingActive False, FailedGetResourceMetric,
//!   naming the container), as in Kubernetes;
//! - `AverageValue`: usage per pod against the quantity.
//!
//! The proposal is `ceil(ready pods with metrics × current / target)`, left at the current
//! count when the ratio is within the 10% tolerance. Pods are grouped as Kubernetes' replica
//! calculator groups them: Pending pods, and for CPU pods not Ready (in their first 5 minutes,
//! or never Ready since their start), are set aside; pods without metrics are missing. When
//! some are missing, or set aside while the ratio asks for more, the ratio is taken again
//! with the missing pods at their whole request (scaling down) or 0 (scaling up) and the
//! set-aside ones at 0 (scaling up), and the count stays if that lands within the tolerance
//! or turns the direction. The largest proposal of all metrics wins,
//! bounded by `minReplicas`/`maxReplicas`. `behavior` then applies: a scale-down takes the
//! highest proposal of its stabilization window (300 s by default), a scale-up the lowest of
//! its own (0 s), and each is limited by its policies (by default up: 4 pods or 100% per
//! 15 s, whichever is more; down: 100% per 15 s). A policy's `periodSeconds` counts from the
//! replica count its period started with: the scale events of the last period are kept, so
//! "1 pod per 60 s" allows one pod a minute however often the controller runs. The change is
//! written through the target's `/scale`, as a user's `kubectl scale` is.
//!
//! Limits: `Pods`, `Object` and `External` metrics are refused by the API; proposals live in
//! memory, so a restarted server starts its stabilization windows afresh; scale events, like
//! proposals, are kept in memory only. A reading taken before a pod's last Ready transition
//! is not told apart (Kubernetes compares the metric's window with the transition).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::objects::{Objects, WriteOptions};
use corral_api::selector::LabelSelector;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, name, namespace, now_secs, uid_of as uid, Change};
use crate::quantity;

const COMPONENT: &str = "horizontal-pod-autoscaler";
/// How often each autoscaler is evaluated.
pub const SYNC: Duration = Duration::from_secs(10);
/// Ratios this close to 1 change nothing (Kubernetes' default tolerance).
const TOLERANCE: f64 = 0.1;

/// What the controller remembers of one autoscaler.
#[derive(Default)]
struct Memory {
    /// Proposals of the longest stabilization window: (time, replicas).
    proposals: Vec<(i64, i64)>,
    /// Scale changes of the longest policy period: (time, new minus old replicas).
    events: Vec<(i64, i64)>,
}

/// Per autoscaler uid.
type History = Mutex<HashMap<String, Memory>>;

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let objects = Objects::new(store.clone());
    let history: History = Mutex::new(HashMap::new());
    loop {
        sync(&store, &objects, &history).await;
        tokio::select! {
            _ = tokio::time::sleep(SYNC) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn sync(store: &Arc<dyn Store>, objects: &Objects, history: &History) {
    let prefix = registry::prefix("autoscaling", "horizontalpodautoscalers", None);
    let Ok((hpas, _)) = kv::list(store, &prefix).await else {
        return;
    };
    {
        let live: Vec<&str> = hpas.iter().map(uid).collect();
        history
            .lock()
            .expect("history")
            .retain(|u, _| live.contains(&u.as_str()));
    }
    for h in hpas.iter().filter(|h| !kv::deleting(h)) {
        sync_one(store, objects, history, h).await;
    }
}

/// What one metric says.
struct Reading {
    /// The replica count it proposes.
    proposal: i64,
    /// Its `currentMetrics` entry.
    current: Value,
}

/// The sum of a resource over a pod's containers: requests from the spec, usage from metrics.
fn requests(pod: &Value, res: &str, container: Option<&str>) -> Result<i64, String> {
    let mut total = 0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        if container.is_some_and(|n| c["name"] != n) {
            continue;
        }
        let q = c["resources"]["requests"][res]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                c["resources"]["requests"][res]
                    .as_f64()
                    .map(|n| n.to_string())
            });
        match q.and_then(|q| amount(&q, res)) {
            Some(v) => total += v,
            None => {
                return Err(format!(
                    "missing request for {res} in container {} of Pod {}",
                    c["name"].as_str().unwrap_or(""),
                    name(pod)
                ))
            }
        }
    }
    Ok(total)
}

/// CPU in millicores, memory in bytes.
fn amount(q: &str, res: &str) -> Option<i64> {
    if res == "cpu" {
        quantity::millis(q)
    } else {
        quantity::bytes(q)
    }
}

fn usage(m: &Value, res: &str, container: Option<&str>) -> i64 {
    m["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| container.is_none_or(|n| c["name"] == n))
        .filter_map(|c| c["usage"][res].as_str().and_then(|q| amount(q, res)))
        .sum()
}

fn format_amount(v: i64, res: &str) -> String {
    if res == "cpu" {
        format!("{v}m")
    } else if v % (1024 * 1024) == 0 {
        format!("{}Mi", v / (1024 * 1024))
    } else {
        format!("{}Ki", v / 1024)
    }
}

fn propose(ratio: f64, count: i64, current: i64) -> i64 {
    if (ratio - 1.0).abs() <= TOLERANCE {
        current
    } else {
        (ratio * count as f64).ceil() as i64
    }
}

/// How long after its start a pod's CPU readings may still be its start-up (Kubernetes'
/// `--horizontal-pod-autoscaler-cpu-initialization-period`).
const CPU_INITIALIZATION_SECS: i64 = 300;
/// A pod not Ready this soon after its start has never been Ready (Kubernetes'
/// `--horizontal-pod-autoscaler-initial-readiness-delay`).
const INITIAL_READINESS_SECS: i64 = 30;

/// Whether a Running pod's CPU reading is set aside, as Kubernetes' replica calculator sets it
/// aside: no Ready condition or start time; within the initialization period, not Ready;
/// after it, not Ready and never Ready since the start.
fn cpu_unready(p: &Value, now: i64) -> bool {
    let ready = p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let started = p["status"]["startTime"]
        .as_str()
        .and_then(corral_store::meta::parse_rfc3339);
    let (Some(c), Some(started)) = (ready, started) else {
        return true;
    };
    let not_ready = c["status"] == "False";
    if started + CPU_INITIALIZATION_SECS > now {
        return not_ready;
    }
    let changed = c["lastTransitionTime"]
        .as_str()
        .and_then(corral_store::meta::parse_rfc3339)
        .unwrap_or(started);
    not_ready && changed < started + INITIAL_READINESS_SECS
}

/// One pod's share of a metric: its usage and, for a `Utilization` target, its request.
#[derive(Clone, Copy)]
struct Share {
    used: i64,
    request: i64,
}

/// The ratio of `shares` to the target: utilization of the requests against `target`
/// percent, or the average against `target` per pod.
fn ratio(shares: &[Share], utilization: bool, target: f64) -> f64 {
    let used: i64 = shares.iter().map(|s| s.used).sum();
    if utilization {
        let req: i64 = shares.iter().map(|s| s.request).sum();
        used as f64 * 100.0 / req.max(1) as f64 / target
    } else {
        used as f64 / shares.len().max(1) as f64 / target
    }
}

/// Reads one metric over the autoscaler's `pods` (not being deleted, not Failed), each with its
/// PodMetrics if it has one, as Kubernetes' replica calculator does: Pending pods and (for
/// CPU) pods not Ready are set aside, pods without metrics are missing. The ratio over the
/// rest proposes `ceil(ratio × their count)`; when pods are missing, or set aside while the
/// ratio asks for more, the ratio is taken again with the missing pods at the target (scaling
/// down) or at 0 (scaling up) and the set-aside ones at 0 (scaling up), and the count is kept
/// if that is within the tolerance or turns the direction.
fn read_metric(
    spec: &Value,
    pods: &[(&Value, Option<&Value>)],
    current: i64,
    now: i64,
) -> Result<Reading, (String, String)> {
    let kind = spec["type"].as_str().unwrap_or("Resource");
    let src_key = if kind == "ContainerResource" {
        "containerResource"
    } else {
        "resource"
    };
    let src = &spec[src_key];
    let res = src["name"].as_str().unwrap_or("cpu");
    let container = src["container"].as_str();
    let t = &src["target"];
    let utilization = t["type"] == "Utilization";
    let no_metrics = || {
        (
            "FailedGetResourceMetric".to_string(),
            format!("failed to get {res} utilization: did not receive metrics for targeted pods (pods might be unready)"),
        )
    };
    let target = if utilization {
        t["averageUtilization"].as_f64().unwrap_or(80.0)
    } else {
        t["averageValue"]
            .as_str()
            .map(str::to_string)
            .or_else(|| t["averageValue"].as_f64().map(|v| v.to_string()))
            .and_then(|q| amount(&q, res))
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                (
                    "InvalidMetricSourceType".to_string(),
                    format!("the {res} target averageValue is not a positive quantity"),
                )
            })? as f64
    };
    let (mut ready, mut unready, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for (p, m) in pods {
        let request = if utilization {
            requests(p, res, container).map_err(|e| {
                (
                    "FailedGetResourceMetric".to_string(),
                    format!("failed to get {res} utilization: {e}"),
                )
            })?
        } else {
            0
        };
        let share = |used| Share { used, request };
        match m {
            _ if p["status"]["phase"] == "Pending" => unready.push(share(0)),
            None => missing.push(share(0)),
            Some(_) if res == "cpu" && cpu_unready(p, now) => unready.push(share(0)),
            Some(m) => ready.push(share(usage(m, res, container))),
        }
    }
    if ready.is_empty() {
        return Err(no_metrics());
    }
    if utilization && ready.iter().map(|s| s.request).sum::<i64>() <= 0 {
        return Err((
            "FailedGetResourceMetric".into(),
            format!("failed to get {res} utilization: the pods request no {res}"),
        ));
    }
    let n = ready.len() as i64;
    let used: i64 = ready.iter().map(|s| s.used).sum();
    let r = ratio(&ready, utilization, target);
    let current_metric = if utilization {
        let util = r * target;
        json!({"type": kind, src_key: {"name": res, "current": {
            "averageUtilization": util.round() as i64,
            "averageValue": format_amount(used / n, res)}}})
    } else {
        json!({"type": kind, src_key: {"name": res, "current": {
            "averageValue": format_amount((used as f64 / n as f64).round() as i64, res)}}})
    };
    let up_with_unready = !unready.is_empty() && r > 1.0;
    let proposal = if !up_with_unready && missing.is_empty() {
        propose(r, n, current)
    } else {
        let mut all = ready.clone();
        for m in &missing {
            // Scaling down, a missing pod is taken at its whole request (or the target, if
            // higher); scaling up, at nothing.
            let used = match (r < 1.0, utilization) {
                (true, true) => (m.request as f64 * target.max(100.0) / 100.0) as i64,
                (true, false) => target as i64,
                (false, _) => 0,
            };
            all.push(Share { used, ..*m });
        }
        if up_with_unready {
            all.extend(unready.iter().copied());
        }
        let again = ratio(&all, utilization, target);
        let turned = (r < 1.0 && again > 1.0) || (r > 1.0 && again < 1.0);
        let count = (again * all.len() as f64).ceil() as i64;
        if (again - 1.0).abs() <= TOLERANCE
            || turned
            || (again < 1.0 && count > current)
            || (again > 1.0 && count < current)
        {
            current
        } else {
            count
        }
    };
    Ok(Reading {
        proposal,
        current: current_metric,
    })
}

/// The most a policy set lets `current` move towards `desired` now, given the scale
/// `events` (time, change) before `now`. Each policy measures from the count its period
/// started with, as Kubernetes' does: a policy of "+4 pods per 60 s" that already added 4
/// in the last minute allows nothing more until the oldest of them is 60 s old.
fn limit(behavior: &Value, current: i64, desired: i64, events: &[(i64, i64)], now: i64) -> i64 {
    let up = desired > current;
    let rules = if up {
        &behavior["scaleUp"]
    } else {
        &behavior["scaleDown"]
    };
    let select = rules["selectPolicy"].as_str().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let bounds: Vec<i64> = rules["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let v = p["value"].as_i64().unwrap_or(0);
            let period = p["periodSeconds"].as_i64().unwrap_or(15);
            let changed: i64 = events
                .iter()
                .filter(|(t, _)| now - t < period)
                .map(|(_, d)| *d)
                .sum();
            let start = current - changed;
            match (p["type"].as_str(), up) {
                (Some("Pods"), true) => start + v,
                (Some("Pods"), false) => start - v,
                (_, true) => (start as f64 * (1.0 + v as f64 / 100.0)).ceil() as i64,
                (_, false) => (start as f64 * (1.0 - v as f64 / 100.0)) as i64,
            }
        })
        .collect();
    if bounds.is_empty() {
        return desired;
    }
    // `Max` picks the policy that allows the biggest change, `Min` the smallest.
    let bound = match (up, select == "Min") {
        (true, false) => *bounds.iter().max().expect("bounds"),
        (true, true) => *bounds.iter().min().expect("bounds"),
        (false, false) => *bounds.iter().min().expect("bounds"),
        (false, true) => *bounds.iter().max().expect("bounds"),
    };
    if up {
        desired.min(bound.max(current))
    } else {
        desired.max(bound.min(current))
    }
}

/// The longest `periodSeconds` of a behavior's policies.
fn longest_period(behavior: &Value) -> i64 {
    ["scaleUp", "scaleDown"]
        .iter()
        .flat_map(|d| behavior[d]["policies"].as_array().into_iter().flatten())
        .filter_map(|p| p["periodSeconds"].as_i64())
        .max()
        .unwrap_or(15)
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, history: &History, h: &Value) {
    let ns = namespace(h);
    let spec = &h["spec"];
    let now = now_secs();
    let target = &spec["scaleTargetRef"];
    let (tkind, tname) = (
        target["kind"].as_str().unwrap_or(""),
        target["name"].as_str().unwrap_or(""),
    );
    let api_version = target["apiVersion"].as_str().unwrap_or("apps/v1");
    let mut conditions: Vec<(&str, bool, String, String)> = Vec::new();
    let Some(r) = corral_api::resources::by_kind(api_version, tkind)
        .filter(|r| r.subresources.contains(&"scale"))
    else {
        conditions.push(("AbleToScale", false, "FailedGetScale".into(), format!("the HPA controller was unable to get the target's current scale: no scale subresource for {api_version} {tkind}")));
        write_status(store, h, None, None, Vec::new(), conditions, false).await;
        return;
    };
    let tkey = registry::key(r.group, r.plural, Some(ns), tname);
    let Ok(Some(kvv)) = store.get(&tkey).await else {
        conditions.push(("AbleToScale", false, "FailedGetScale".into(), format!("the HPA controller was unable to get the target's current scale: {} \"{tname}\" not found", r.qualified())));
        write_status(store, h, None, None, Vec::new(), conditions, false).await;
        return;
    };
    let Some(obj) = registry::decode(&kvv) else {
        return;
    };
    let current = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    conditions.push((
        "AbleToScale",
        true,
        "SucceededGetScale".into(),
        "the HPA controller was able to get the target's current scale".into(),
    ));
    let Ok(sel) = LabelSelector::from_k8s(&obj["spec"]["selector"]) else {
        return;
    };
    let (pods, metrics) = match (
        kv::list(store, &registry::prefix("", "pods", Some(ns))).await,
        kv::list(store, &registry::prefix("metrics.k8s.io", "pods", Some(ns))).await,
    ) {
        (Ok((p, _)), Ok((m, _))) => (p, m),
        _ => return,
    };
    let by_name: HashMap<&str, &Value> = metrics.iter().map(|m| (name(m), m)).collect();
    // As Kubernetes: pods being deleted and failed (or finished) pods do not count.
    let measured: Vec<(&Value, Option<&Value>)> = pods
        .iter()
        .filter(|p| {
            !kv::deleting(p)
                && !matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
        })
        .filter(|p| sel.matches(p.get("metadata").and_then(|m| m.get("labels"))))
        .map(|p| (p, by_name.get(name(p)).copied()))
        .collect();
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    let max = spec["maxReplicas"].as_i64().unwrap_or(min).max(min);
    let mut proposal: Option<i64> = None;
    let mut current_metrics = Vec::new();
    let mut failure: Option<(String, String)> = None;
    for m in spec["metrics"].as_array().into_iter().flatten() {
        match read_metric(m, &measured, current, now) {
            Ok(r) => {
                proposal = Some(proposal.map_or(r.proposal, |p: i64| p.max(r.proposal)));
                current_metrics.push(r.current);
            }
            Err(e) => failure = Some(e),
        }
    }
    let active = proposal.is_some();
    match (&failure, active) {
        (Some((reason, msg)), _) => {
            conditions.push(("ScalingActive", false, reason.clone(), msg.clone()));
            kv::event(store, h, "Warning", reason, msg, COMPONENT).await;
        }
        (None, true) => conditions.push((
            "ScalingActive",
            true,
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from the metrics".into(),
        )),
        (None, false) => conditions.push((
            "ScalingActive",
            false,
            "FailedGetResourceMetric".into(),
            "no metrics".into(),
        )),
    }
    // A failing metric keeps the count (Kubernetes does not scale down on partial data).
    let Some(mut desired) = proposal.filter(|_| failure.is_none()) else {
        write_status(
            store,
            h,
            Some(current),
            Some(current),
            current_metrics,
            conditions,
            false,
        )
        .await;
        return;
    };
    let raw = desired;
    desired = desired.clamp(min, max);
    let limited = if raw > max {
        Some((
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        ))
    } else if raw < min {
        Some((
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        ))
    } else {
        None
    };
    // Stabilization: down takes the highest of its window, up the lowest of its own.
    let behavior = &spec["behavior"];
    let down_window = behavior["scaleDown"]["stabilizationWindowSeconds"]
        .as_i64()
        .unwrap_or(300);
    let up_window = behavior["scaleUp"]["stabilizationWindowSeconds"]
        .as_i64()
        .unwrap_or(0);
    let events = {
        let mut hist = history.lock().expect("history");
        let memory = hist.entry(uid(h).to_string()).or_default();
        let period = longest_period(behavior);
        memory.events.retain(|(t, _)| now - t < period);
        let list = &mut memory.proposals;
        list.push((now, desired));
        let keep = down_window.max(up_window);
        list.retain(|(t, _)| now - t <= keep);
        if desired < current {
            desired = list
                .iter()
                .filter(|(t, _)| now - t <= down_window)
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(desired)
                .min(current);
        } else if desired > current {
            desired = list
                .iter()
                .filter(|(t, _)| now - t <= up_window)
                .map(|(_, r)| *r)
                .min()
                .unwrap_or(desired)
                .max(current);
        }
        memory.events.clone()
    };
    desired = limit(behavior, current, desired, &events, now);
    conditions.push(match limited {
        Some((reason, msg)) => ("ScalingLimited", true, reason.into(), msg.into()),
        None => (
            "ScalingLimited",
            false,
            "DesiredWithinRange".into(),
            "the desired count is within the acceptable range".into(),
        ),
    });
    let mut scaled = false;
    if desired != current {
        let body = serde_json::to_vec(&json!({"spec": {"replicas": desired}})).unwrap_or_default();
        let wo = WriteOptions {
            field_manager: "horizontal-pod-autoscaler".into(),
            ..Default::default()
        };
        match corral_api::workloads::write_scale(objects, r, Some(ns), tname, &body, None, &wo)
            .await
        {
            Ok(_) => {
                if let Some(m) = history.lock().expect("history").get_mut(uid(h)) {
                    m.events.push((now, desired - current));
                }
                let what = current_metrics
                    .first()
                    .and_then(|m| {
                        m["resource"]["name"]
                            .as_str()
                            .or(m["containerResource"]["name"].as_str())
                    })
                    .unwrap_or("cpu");
                let dir = if desired > current { "above" } else { "below" };
                kv::event(store, h, "Normal", "SuccessfulRescale", &format!("New size: {desired}; reason: {what} resource utilization (percentage of request) {dir} target"), COMPONENT).await;
                scaled = true;
                conditions[0] = (
                    "AbleToScale",
                    true,
                    "SucceededRescale".into(),
                    format!("the HPA controller was able to update the target scale to {desired}"),
                );
            }
            Err(e) => {
                kv::event(
                    store,
                    h,
                    "Warning",
                    "FailedRescale",
                    &format!("New size: {desired}; error: {}", e.message),
                    COMPONENT,
                )
                .await;
                conditions[0] = (
                    "AbleToScale",
                    false,
                    "FailedUpdateScale".into(),
                    format!(
                        "the HPA controller was unable to update the target scale: {}",
                        e.message
                    ),
                );
                desired = current;
            }
        }
    } else {
        conditions[0] = (
            "AbleToScale",
            true,
            "ReadyForNewScale".into(),
            "recommended size matches current size".into(),
        );
    }
    write_status(
        store,
        h,
        Some(current),
        Some(desired),
        current_metrics,
        conditions,
        scaled,
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn write_status(
    store: &Arc<dyn Store>,
    h: &Value,
    current: Option<i64>,
    desired: Option<i64>,
    metrics: Vec<Value>,
    conditions: Vec<(&str, bool, String, String)>,
    scaled: bool,
) {
    let key = registry::key(
        "autoscaling",
        "horizontalpodautoscalers",
        Some(namespace(h)),
        name(h),
    );
    let now = kv::now();
    let _ = kv::modify(store, &key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        st["observedGeneration"] = v["metadata"]["generation"].clone();
        st["currentReplicas"] = json!(current.unwrap_or(0));
        st["desiredReplicas"] = json!(desired.unwrap_or(0));
        if metrics.is_empty() {
            st.as_object_mut().expect("status").remove("currentMetrics");
        } else {
            st["currentMetrics"] = json!(metrics);
        }
        if scaled {
            st["lastScaleTime"] = json!(now);
        }
        let old: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
        let list: Vec<Value> = conditions
            .iter()
            .map(|(ty, ok, reason, msg)| {
                let status = if *ok { "True" } else { "False" };
                let since = old
                    .iter()
                    .find(|c| c["type"] == *ty && c["status"] == status)
                    .and_then(|c| c["lastTransitionTime"].as_str())
                    .unwrap_or(&now)
                    .to_string();
                json!({"type": ty, "status": status, "reason": reason, "message": msg,
                    "lastTransitionTime": since})
            })
            .collect();
        st["conditions"] = json!(list);
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        Change::Write
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Value {
        json!({
            "scaleUp": {"selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleDown": {"selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        })
    }

    #[test]
    fn kubernetes_algorithm_and_tolerance() {
        // 3 pods at 90% of a 50% target: ceil(3 × 1.8) = 6.
        assert_eq!(propose(90.0 / 50.0, 3, 3), 6);
        // Within 10%: no change.
        assert_eq!(propose(54.0 / 50.0, 3, 3), 3);
        assert_eq!(propose(10.0 / 50.0, 5, 5), 1);
    }

    #[test]
    fn policies_limit_each_step() {
        let b = defaults();
        // Up: the larger of +4 pods and +100%.
        assert_eq!(limit(&b, 1, 20, &[], 0), 5);
        assert_eq!(limit(&b, 10, 40, &[], 0), 20);
        assert_eq!(limit(&b, 3, 4, &[], 0), 4);
        // Down: 100% allows anything.
        assert_eq!(limit(&b, 10, 1, &[], 0), 1);
        let mut slow = b.clone();
        slow["scaleDown"]["policies"] = json!([{"type": "Pods", "value": 1, "periodSeconds": 60}]);
        assert_eq!(limit(&slow, 10, 1, &[], 0), 9);
        slow["scaleUp"]["selectPolicy"] = json!("Disabled");
        assert_eq!(limit(&slow, 2, 8, &[], 0), 2);
    }

    #[test]
    fn a_period_counts_from_the_replicas_it_started_with() {
        let mut b = defaults();
        b["scaleDown"]["policies"] = json!([{"type": "Pods", "value": 1, "periodSeconds": 60}]);
        // 10 → 9 at t=100: until t=160 nothing more comes off.
        let events = [(100, -1)];
        assert_eq!(limit(&b, 9, 1, &events, 110), 9);
        assert_eq!(limit(&b, 9, 1, &events, 159), 9);
        assert_eq!(limit(&b, 9, 1, &events, 160), 8);
        // Up by the default policies: 2 → 6 (+4) at t=0, then 10 s later the period started
        // at 2, so +100% allows 4 and +4 pods allows 6: no more than the 6 there are.
        let events = [(0, 4)];
        assert_eq!(limit(&b, 6, 20, &events, 10), 6);
        // Once the 15 s period has passed, the step is measured from 6 again.
        assert_eq!(limit(&b, 6, 20, &events, 15), 12);
        // A percentage down-policy truncates, as Kubernetes' does: 50% of 5 leaves 2.
        b["scaleDown"]["policies"] = json!([{"type": "Percent", "value": 50, "periodSeconds": 30}]);
        assert_eq!(limit(&b, 5, 1, &[], 0), 2);
        // An up-event inside the period raises where the down-period started.
        assert_eq!(limit(&b, 8, 1, &[(0, 3)], 10), 2);
    }

    /// A Running pod requesting `cpu` millicores, started at `started`, Ready or not since then.
    fn running(name: &str, cpu: i64, ready: bool, started: i64) -> Value {
        let at = |t: i64| {
            corral_store::meta::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64),
            )
        };
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "main",
            "resources": {"requests": {"cpu": format!("{cpu}m")}}}]},
            "status": {"phase": "Running", "startTime": at(started), "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" },
                 "lastTransitionTime": at(started)}]}})
    }

    fn cpu_use(millis: i64) -> Value {
        json!({"containers": [{"name": "main", "usage": {"cpu": format!("{}n", millis * 1_000_000)}}]})
    }

    #[test]
    fn missing_and_unready_pods_are_counted_as_kubernetes_counts_them() {
        let spec = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let now = 10_000;
        let (a, b) = (running("a", 100, true, 0), running("b", 100, true, 0));
        let pending = json!({"metadata": {"name": "p"}, "spec": a["spec"].clone(),
            "status": {"phase": "Pending"}});
        let (hot, idle) = (cpu_use(100), cpu_use(10));
        // Two busy pods at 100%: 4.
        let both = [(&a, Some(&hot)), (&b, Some(&hot))];
        assert_eq!(read_metric(&spec, &both, 2, now).unwrap().proposal, 4);
        // One busy, one without metrics: scaling up, the missing one counts as 0%:
        // (100 + 0) / 200 = 50%, within the tolerance: stay at 2.
        let one_missing = [(&a, Some(&hot)), (&b, None)];
        assert_eq!(
            read_metric(&spec, &one_missing, 2, now).unwrap().proposal,
            2
        );
        // One idle, one missing: scaling down, the missing one counts as its whole request:
        // (10 + 100) / 200 = 55%: within the tolerance of 50%, stay.
        let idle_missing = [(&a, Some(&idle)), (&b, None)];
        assert_eq!(
            read_metric(&spec, &idle_missing, 2, now).unwrap().proposal,
            2
        );
        // Without the missing pod, the idle one alone would go to 1.
        let idle_only = [(&a, Some(&idle))];
        assert_eq!(read_metric(&spec, &idle_only, 2, now).unwrap().proposal, 1);
        // A Pending pod, scaling up: taken at 0%: (100 + 0) / 200 = 50%: stay at 2.
        let with_pending = [(&a, Some(&hot)), (&pending, None)];
        assert_eq!(
            read_metric(&spec, &with_pending, 2, now).unwrap().proposal,
            2
        );
        // A pod not Ready during its first 5 minutes is set aside for CPU.
        let starting = running("s", 100, false, now - 60);
        assert!(cpu_unready(&starting, now));
        let both = [(&a, Some(&hot)), (&starting, Some(&hot))];
        // Scaling up with it: (100 + 0) / 200: stay.
        assert_eq!(read_metric(&spec, &both, 2, now).unwrap().proposal, 2);
        // Long running and once Ready: its reading counts whatever its condition now says.
        let mut flapped = running("f", 100, false, 0);
        flapped["status"]["conditions"][0]["lastTransitionTime"] =
            json!(corral_store::meta::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs((now - 10) as u64)
            ));
        assert!(!cpu_unready(&flapped, now));
        // Nothing but pods without metrics: no metric.
        assert!(read_metric(&spec, &[(&a, None)], 1, now).is_err());
    }

    #[test]
    fn a_pod_without_requests_fails_the_utilization_metric() {
        let pod =
            json!({"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "main"}]}});
        let m = json!({"containers": [{"name": "main", "usage": {"cpu": "50000000n", "memory": "1024Ki"}}]});
        let spec = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let Err((reason, msg)) = read_metric(&spec, &[(&pod, Some(&m))], 1, 0) else {
            panic!("no error");
        };
        assert_eq!(reason, "FailedGetResourceMetric");
        assert!(
            msg.contains("missing request for cpu in container main of Pod web-1"),
            "{msg}"
        );
        let pod = running("web-1", 100, true, 0);
        let r = read_metric(&spec, &[(&pod, Some(&m))], 1, 1000)
            .ok()
            .unwrap();
        assert_eq!(r.current["resource"]["current"]["averageUtilization"], 50);
        assert_eq!(r.proposal, 1);
    }
}
