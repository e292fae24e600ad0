//! The Job controller: a Job's pods run to `completions` successes, `parallelism` at a time,
//! as Kubernetes' job controller runs them.
//!
//! - Pods carry a controller ownerReference to the Job and the finalizer
//!   `batch.kubernetes.io/job-tracking`, so a finished pod is counted before it can go: the
//!   pass that sees it finished records its uid in `status.uncountedTerminatedPods`, then
//!   removes the finalizer, then moves it into `succeeded`/`failed`. A pod is counted once,
//!   even across a crash between the steps, and a deleted pod's success is never lost (that
//!   would run its work twice).
//! - `completionMode: Indexed`: each pod has an index (`batch.kubernetes.io/job-completion-index`
//!   annotation and label, `JOB_COMPLETION_INDEX` in its environment, hostname `<job>-<i>`);
//!   the Job completes when every index has succeeded once (`status.completedIndexes`).
//! - Without `completions` (a work queue) the Job completes when a pod has succeeded and none
//!   is left running.
//! - Failures: more than `backoffLimit` failed pods (with `restartPolicy: OnFailure`, the
//!   containers' restarts count too) fail the Job (BackoffLimitExceeded); so does running
//!   longer than `activeDeadlineSeconds` (DeadlineExceeded). A failed pod is replaced after
//!   Kubernetes' back-off (10 s, doubled per failure, at most 6 min). A failing Job's running
//!   pods are deleted.
//! - `suspend: true` deletes the running pods (condition Suspended); resuming starts again.
//! - `ttlSecondsAfterFinished`: the finished Job is deleted that long after it finished (its
//!   pods go with it, by the garbage collector).
//! - Status: startTime, active, ready, succeeded, failed, completionTime, conditions Complete
//!   or Failed (with SuccessCriteriaMet or FailureTarget before them, as Kubernetes 1.31+
//!   writes them).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use corral_api::objects::{parse_rfc3339, Objects};
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, deleting, name, namespace, now_secs, uid_of as uid, Change};
use crate::replicasets::{controller_ref, controller_uid};

const COMPONENT: &str = "job-controller";
/// The finalizer that keeps a Job's pod until it is counted.
pub const TRACKING: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) with a pod's completion index.
pub const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// At most this many pods made per Job per pass.
const BURST: usize = 100;

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("batch", "jobs", None),
        registry::prefix("", "pods", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(&store, &prefixes, "job controller", shutdown, || {
        sync(&store, &objects)
    })
    .await;
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn terminal(p: &Value) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn has_tracking(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING))
}

/// A Job's condition of type `ty` is True.
pub fn condition(job: &Value, ty: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// Whether a Job has finished (Complete or Failed).
pub fn finished(job: &Value) -> bool {
    condition(job, "Complete") || condition(job, "Failed")
}

/// When a finished Job finished: its completion time, or its Failed condition's time.
pub fn finish_time(job: &Value) -> Option<i64> {
    if let Some(t) = job["status"]["completionTime"].as_str() {
        return parse_rfc3339(t);
    }
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Failed" && c["status"] == "True")?["lastTransitionTime"]
        .as_str()
        .and_then(parse_rfc3339)
}

fn pod_index(p: &Value) -> Option<i64> {
    p["metadata"]["annotations"][INDEX]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// `0-2,4` as Kubernetes writes `completedIndexes`.
fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().expect("peeked");
        }
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    out.join(",")
}

fn parse_indexes(s: &str) -> BTreeSet<i64> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            if b - a <= 100_000 {
                set.extend(a..=b);
            }
        }
    }
    set
}

/// One pass over every Job; true while one waits on time or made a change.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((jobs, _)) = kv::list(store, &registry::prefix("batch", "jobs", None)).await else {
        return true;
    };
    // With no Job, only pods still carrying the tracking finalizer (their Job deleted) matter.
    let pods = if jobs.is_empty() {
        kv::list_containing(store, &registry::prefix("", "pods", None), TRACKING).await
    } else {
        kv::list(store, &registry::prefix("", "pods", None)).await
    };
    let Ok((pods, _)) = pods else {
        return true;
    };
    let job_uids: BTreeSet<&str> = jobs.iter().map(uid).collect();
    let mut by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    let mut busy = false;
    for p in pods {
        if !has_tracking(&p) {
            if let Some(u) = controller_uid(&p) {
                by_owner.entry(u.to_string()).or_default().push(p);
            }
            continue;
        }
        match controller_uid(&p) {
            Some(u) if job_uids.contains(u) => by_owner.entry(u.to_string()).or_default().push(p),
            // Its Job is gone: nothing will count it any more.
            _ => {
                let key = registry::key("", "pods", Some(namespace(&p)), name(&p));
                let _ = kv::remove_finalizer(store, &key, TRACKING).await;
                busy = true;
            }
        }
    }
    for job in &jobs {
        let owned = by_owner.get(uid(job)).map(Vec::as_slice).unwrap_or(&[]);
        busy |= sync_one(store, objects, job, owned).await;
    }
    busy
}

/// What a pass decided about a Job's counts.
#[derive(Debug, Default)]
struct Counts {
    succeeded: i64,
    failed: i64,
    indexes: BTreeSet<i64>,
    /// Uids recorded as finished but not yet counted: (uid, succeeded).
    uncounted: Vec<(String, bool)>,
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, job: &Value, pods: &[Value]) -> bool {
    let key = registry::key("batch", "jobs", Some(namespace(job)), name(job));
    let now = now_secs();
    if deleting(job) {
        // The garbage collector deletes the pods; let it.
        for p in pods.iter().filter(|p| has_tracking(p)) {
            let pk = registry::key("", "pods", Some(namespace(p)), name(p));
            let _ = kv::remove_finalizer(store, &pk, TRACKING).await;
        }
        return false;
    }
    let mut busy = false;
    // Step 1: finished pods with the finalizer go into the uncounted lists.
    let st = &job["status"];
    let mut c = Counts {
        succeeded: st["succeeded"].as_i64().unwrap_or(0),
        failed: st["failed"].as_i64().unwrap_or(0),
        indexes: parse_indexes(st["completedIndexes"].as_str().unwrap_or("")),
        uncounted: Vec::new(),
    };
    for (list, ok) in [("succeeded", true), ("failed", false)] {
        for u in st["uncountedTerminatedPods"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            c.uncounted.push((u.to_string(), ok));
        }
    }
    let mut newly = false;
    for p in pods.iter().filter(|p| terminal(p) && has_tracking(p)) {
        if c.uncounted.iter().any(|(u, _)| u == uid(p)) {
            continue;
        }
        let ok = phase(p) == "Succeeded";
        c.uncounted.push((uid(p).to_string(), ok));
        if ok {
            if let Some(i) = pod_index(p) {
                c.indexes.insert(i);
            }
        }
        newly = true;
    }
    if newly {
        write_uncounted(store, &key, &c).await;
        busy = true;
    }
    // Step 2: their finalizers go. Step 3 (written with the status below): those whose
    // finalizer is gone are counted; one whose removal failed stays uncounted, for the next
    // pass (counting it now and again then would count it twice).
    let mut kept = Vec::new();
    for (u, ok) in std::mem::take(&mut c.uncounted) {
        let pod = pods.iter().find(|p| uid(p) == u && has_tracking(p));
        let gone = match pod {
            Some(p) => {
                let pk = registry::key("", "pods", Some(namespace(p)), name(p));
                kv::remove_finalizer(store, &pk, TRACKING).await.is_ok()
            }
            None => true,
        };
        match (gone, ok) {
            (true, true) => c.succeeded += 1,
            (true, false) => c.failed += 1,
            (false, _) => kept.push((u, ok)),
        }
    }
    busy |= !kept.is_empty();
    c.uncounted = kept;

    let spec = &job["spec"];
    let active: Vec<&Value> = pods
        .iter()
        .filter(|p| !terminal(p) && !deleting(p))
        .collect();
    let restarts: i64 = if spec["template"]["spec"]["restartPolicy"] == "OnFailure" {
        active
            .iter()
            .flat_map(|p| {
                p["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|cs| cs["restartCount"].as_i64())
            .sum()
    } else {
        0
    };
    let suspended = spec["suspend"] == json!(true);
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    let completions = spec["completions"].as_i64();
    let indexed = spec["completionMode"] == "Indexed";
    let start = st["startTime"].as_str().and_then(parse_rfc3339);
    let mut outcome: Option<(&str, &str, String)> = None;
    if !finished(job) && !suspended {
        let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
        let done = match (completions, indexed) {
            (Some(n), true) => c.indexes.len() as i64 >= n,
            (Some(n), false) => c.succeeded >= n,
            (None, _) => c.succeeded > 0 && active.is_empty(),
        };
        if done {
            outcome = Some((
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            ));
        } else if c.failed + restarts > backoff_limit {
            outcome = Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        } else if let (Some(d), Some(s)) = (spec["activeDeadlineSeconds"].as_i64(), start) {
            if now - s >= d {
                outcome = Some((
                    "Failed",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".into(),
                ));
            } else {
                busy = true;
            }
        }
    }
    let mut made = 0usize;
    if finished(job) || suspended || outcome.as_ref().is_some_and(|o| o.0 == "Failed") {
        // Nothing runs for a finished, failing or suspended Job.
        for p in &active {
            let pk = registry::key("", "pods", Some(namespace(p)), name(p));
            if kv::delete_like_api(store, &pk).await.is_ok() {
                busy = true;
            }
        }
    } else if outcome.is_none() {
        // How many more pods, and with which indexes.
        let wanted: Vec<Option<i64>> = match (completions, indexed) {
            (Some(n), true) => {
                let running: BTreeSet<i64> = active.iter().filter_map(|p| pod_index(p)).collect();
                let room = (parallelism - active.len() as i64).max(0) as usize;
                (0..n)
                    .filter(|i| !c.indexes.contains(i) && !running.contains(i))
                    .take(room)
                    .map(Some)
                    .collect()
            }
            (Some(n), false) => {
                let want = parallelism.min(n - c.succeeded).max(0);
                vec![None; (want - active.len() as i64).max(0) as usize]
            }
            (None, _) if c.succeeded > 0 => Vec::new(),
            (None, _) => vec![None; (parallelism - active.len() as i64).max(0) as usize],
        };
        let wait = backoff_wait(pods, c.failed, now);
        if !wanted.is_empty() && wait > 0 {
            busy = true;
        } else {
            for index in wanted.into_iter().take(BURST) {
                match make_pod(objects, job, index).await {
                    Ok(p) => {
                        made += 1;
                        kv::event(
                            store,
                            job,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {}", name(&p)),
                            COMPONENT,
                        )
                        .await;
                    }
                    Err(e) => {
                        kv::event(
                            store,
                            job,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {}", e.message),
                            COMPONENT,
                        )
                        .await;
                        busy = true;
                        break;
                    }
                }
            }
        }
    }
    if let Some((ty, reason, message)) = &outcome {
        kv::event(
            store,
            job,
            if *ty == "Complete" {
                "Normal"
            } else {
                "Warning"
            },
            if *ty == "Complete" {
                "Completed"
            } else {
                reason
            },
            if *ty == "Complete" {
                "Job completed"
            } else {
                message
            },
            COMPONENT,
        )
        .await;
    }
    let ready = active
        .iter()
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count();
    let active_n = if outcome.is_some() || suspended {
        0
    } else {
        active.len() + made
    };
    busy |= write_status(
        store, &key, &c, active_n, ready, suspended, outcome, indexed,
    )
    .await;
    busy |= expire(store, job, &key, now).await;
    busy || made > 0
}

/// Seconds still to wait before a failed pod is replaced: 10 s after the last failure,
/// doubled for each earlier one, at most 6 minutes.
fn backoff_wait(pods: &[Value], failures: i64, now: i64) -> i64 {
    if failures <= 0 {
        return 0;
    }
    let last = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|cs| cs["state"]["terminated"]["finishedAt"].as_str())
                .filter_map(parse_rfc3339)
                .max()
        })
        .max();
    let Some(last) = last else { return 0 };
    let delay = (10i64 << (failures - 1).min(6)).min(360);
    (last + delay - now).max(0)
}

async fn write_uncounted(store: &Arc<dyn Store>, key: &str, c: &Counts) {
    let _ = kv::modify(store, key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        let list = |ok: bool| -> Vec<&str> {
            c.uncounted
                .iter()
                .filter(|(_, o)| *o == ok)
                .map(|(u, _)| u.as_str())
                .collect()
        };
        st["uncountedTerminatedPods"] = json!({"succeeded": list(true), "failed": list(false)});
        if !c.indexes.is_empty() {
            st["completedIndexes"] = json!(format_indexes(&c.indexes));
        }
        v["status"] = st;
        Change::Write
    })
    .await;
}

fn set_condition(st: &mut Value, ty: &str, status: bool, reason: &str, message: &str, now: &str) {
    let list = st
        .as_object_mut()
        .expect("status")
        .entry("conditions")
        .or_insert(json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let s = if status { "True" } else { "False" };
    if let Some(c) = list.iter_mut().find(|c| c["type"] == ty) {
        if c["status"] != s {
            c["status"] = json!(s);
            c["lastTransitionTime"] = json!(now);
        }
        c["reason"] = json!(reason);
        c["message"] = json!(message);
        c["lastProbeTime"] = json!(now);
        return;
    }
    list.push(
        json!({"type": ty, "status": s, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now}),
    );
}

#[allow(clippy::too_many_arguments)]
async fn write_status(
    store: &Arc<dyn Store>,
    key: &str,
    c: &Counts,
    active: usize,
    ready: usize,
    suspended: bool,
    outcome: Option<(&str, &str, String)>,
    indexed: bool,
) -> bool {
    let now = kv::now();
    let mut changed = false;
    let _ = kv::modify(store, key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        st["succeeded"] = json!(c.succeeded);
        st["failed"] = json!(c.failed);
        st["active"] = json!(active);
        st["ready"] = json!(ready);
        let list = |ok: bool| -> Vec<&str> {
            c.uncounted
                .iter()
                .filter(|(_, o)| *o == ok)
                .map(|(u, _)| u.as_str())
                .collect()
        };
        st["uncountedTerminatedPods"] = if c.uncounted.is_empty() {
            json!({})
        } else {
            json!({"succeeded": list(true), "failed": list(false)})
        };
        if indexed {
            st["completedIndexes"] = json!(format_indexes(&c.indexes));
        }
        if suspended && !finished(v) {
            if !condition(v, "Suspended") {
                set_condition(
                    &mut st,
                    "Suspended",
                    true,
                    "JobSuspended",
                    "Job suspended",
                    &now,
                );
            }
            st.as_object_mut().expect("status").remove("startTime");
        } else if !finished(v) {
            if condition(v, "Suspended") {
                set_condition(
                    &mut st,
                    "Suspended",
                    false,
                    "JobResumed",
                    "Job resumed",
                    &now,
                );
            }
            if st["startTime"].is_null() {
                st["startTime"] = json!(now);
            }
        }
        if let Some((ty, reason, message)) = &outcome {
            let interim = if *ty == "Complete" {
                "SuccessCriteriaMet"
            } else {
                "FailureTarget"
            };
            set_condition(&mut st, interim, true, reason, message, &now);
            set_condition(&mut st, ty, true, reason, message, &now);
            if *ty == "Complete" {
                st["completionTime"] = json!(now);
            }
        }
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        changed = true;
        Change::Write
    })
    .await;
    changed
}

/// Deletes a finished Job whose `ttlSecondsAfterFinished` ran out; true while one waits.
async fn expire(store: &Arc<dyn Store>, job: &Value, key: &str, now: i64) -> bool {
    let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
        return false;
    };
    let Some(done) = finish_time(job) else {
        return false;
    };
    if now < done + ttl {
        return true;
    }
    let _ = kv::delete_like_api(store, key).await;
    false
}

async fn make_pod(
    objects: &Objects,
    job: &Value,
    index: Option<i64>,
) -> Result<Value, corral_api::status::ApiError> {
    let t = &job["spec"]["template"];
    let job_name = name(job);
    let mut meta = json!({
        "generateName": match index {
            Some(i) => format!("{job_name}-{i}-"),
            None => format!("{job_name}-"),
        },
        "namespace": namespace(job),
        "ownerReferences": [controller_ref(job, "batch/v1", "Job")],
        "finalizers": [TRACKING],
    });
    for f in ["labels", "annotations"] {
        if t["metadata"][f].is_object() {
            meta[f] = t["metadata"][f].clone();
        }
    }
    let mut spec = t["spec"].clone();
    if let Some(i) = index {
        for f in ["labels", "annotations"] {
            if !meta[f].is_object() {
                meta[f] = json!({});
            }
            meta[f][INDEX] = json!(i.to_string());
        }
        if spec["hostname"].is_null() {
            spec["hostname"] = json!(format!("{job_name}-{i}"));
        }
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_array_mut().into_iter().flatten() {
                let env = c
                    .as_object_mut()
                    .expect("container")
                    .entry("env")
                    .or_insert(json!([]));
                if let Some(env) = env.as_array_mut() {
                    env.push(json!({"name": "JOB_COMPLETION_INDEX", "value": i.to_string()}));
                }
            }
        }
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    kv::create_as_controller(objects, namespace(job), &pod).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip() {
        let set: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert!(parse_indexes("").is_empty());
    }

    #[test]
    fn back_off_doubles_from_ten_seconds() {
        let failed = |t: &str| {
            json!({"status": {"phase": "Failed", "containerStatuses": [
                {"state": {"terminated": {"finishedAt": t}}}]}})
        };
        let t = parse_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let pods = [failed("2026-12-03T10:00:00Z")];
        assert_eq!(backoff_wait(&pods, 1, t + 3), 7);
        assert_eq!(backoff_wait(&pods, 2, t + 3), 17);
        assert_eq!(backoff_wait(&pods, 10, t), 360);
        assert_eq!(backoff_wait(&pods, 1, t + 30), 0);
        assert_eq!(backoff_wait(&[], 3, t), 0);
    }
}
