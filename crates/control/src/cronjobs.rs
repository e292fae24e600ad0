//! The CronJob controller: a CronJob makes a Job from its template at each time its schedule
//! names (in UTC), as Kubernetes' cronjob controller does.
//!
//! - A Job is named `<cronjob>-<scheduled minutes since the epoch>`, so one scheduled time
//!   makes at most one Job even if two passes (or a restarted server) see it: the second
//!   create is refused as AlreadyExists. It carries a controller ownerReference to the CronJob
//!   and the annotation `batch.kubernetes.io/cronjob-scheduled-timestamp`.
//! - Only the latest missed time runs (a server down for an hour starts one Job, not sixty);
//!   with `startingDeadlineSeconds`, a time older than that is skipped.
//! - `concurrencyPolicy`: `Allow` runs Jobs side by side; `Forbid` skips a time while a Job
//!   runs (it runs later, once that one finishes, if still within the deadline); `Replace`
//!   deletes the running Job first.
//! - `suspend: true` starts nothing; Jobs already running go on.
//! - History: finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`
//!   are deleted, oldest first (their pods go with them, by the garbage collector).
//! - Status: `active` (references to running Jobs), `lastScheduleTime`, `lastSuccessfulTime`.

use std::collections::HashMap;
use std::sync::Arc;

use corral_api::cron::Schedule;
use corral_api::objects::{parse_rfc3339, rfc3339, Objects};
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::jobs::{finish_time, finished};
use crate::kv::{self, deleting, name, namespace, now_secs, uid_of as uid, Change};
use crate::replicasets::{controller_ref, controller_uid};

const COMPONENT: &str = "cronjob-controller";
/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed times older than this are not looked for (a schedule that last ran longer ago than
/// this starts at its latest time within it).
const LOOKBACK: i64 = 2 * 86_400;

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<dyn Store>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let prefixes = [
        registry::prefix("batch", "cronjobs", None),
        registry::prefix("batch", "jobs", None),
    ];
    let objects = Objects::new(store.clone());
    kv::watch_loop(&store, &prefixes, "cronjob controller", shutdown, || {
        sync(&store, &objects)
    })
    .await;
}

fn time(t: i64) -> String {
    rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64))
}

/// One pass over every CronJob; true while one has a time coming within the idle wait.
pub async fn sync(store: &Arc<dyn Store>, objects: &Objects) -> bool {
    let Ok((crons, _)) = kv::list(store, &registry::prefix("batch", "cronjobs", None)).await else {
        return true;
    };
    if crons.is_empty() {
        return false;
    }
    let Ok((jobs, _)) = kv::list(store, &registry::prefix("batch", "jobs", None)).await else {
        return true;
    };
    let mut by_owner: HashMap<String, Vec<Value>> = HashMap::new();
    for j in jobs {
        if let Some(u) = controller_uid(&j) {
            by_owner.entry(u.to_string()).or_default().push(j);
        }
    }
    let mut busy = false;
    for cj in crons.iter().filter(|c| !deleting(c)) {
        let owned = by_owner.get(uid(cj)).map(Vec::as_slice).unwrap_or(&[]);
        busy |= sync_one(store, objects, cj, owned).await;
    }
    busy
}

fn job_ref(j: &Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": name(j), "namespace": namespace(j),
        "uid": uid(j), "resourceVersion": j["metadata"]["resourceVersion"]})
}

async fn sync_one(store: &Arc<dyn Store>, objects: &Objects, cj: &Value, jobs: &[Value]) -> bool {
    let now = now_secs();
    let key = registry::key("batch", "cronjobs", Some(namespace(cj)), name(cj));
    let spec = &cj["spec"];
    let mut active: Vec<&Value> = jobs
        .iter()
        .filter(|j| !finished(j) && !deleting(j))
        .collect();
    let last_success = jobs
        .iter()
        .filter(|j| crate::jobs::condition(j, "Complete"))
        .filter_map(finish_time)
        .max();
    let mut last_schedule = cj["status"]["lastScheduleTime"]
        .as_str()
        .and_then(parse_rfc3339);
    let mut busy = false;
    let schedule = spec["schedule"].as_str().unwrap_or("").parse::<Schedule>();
    if let (false, Ok(sched)) = (spec["suspend"] == json!(true), &schedule) {
        let created = cj["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        let mut earliest = last_schedule.unwrap_or(created).max(now - LOOKBACK);
        if let Some(d) = spec["startingDeadlineSeconds"].as_i64() {
            earliest = earliest.max(now - d);
        }
        let (due, missed) = sched.latest_between(earliest, now);
        if missed > 100 {
            kv::event(
                store,
                cj,
                "Warning",
                "TooManyMissedTimes",
                &format!("too many missed start times: {missed}; only the latest runs"),
                COMPONENT,
            )
            .await;
        }
        if let Some(t) = due {
            let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
            let mut go = true;
            if !active.is_empty() {
                match policy {
                    "Forbid" => {
                        kv::event(store, cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid", COMPONENT).await;
                        go = false;
                    }
                    "Replace" => {
                        for j in &active {
                            let jk = registry::key("batch", "jobs", Some(namespace(j)), name(j));
                            if kv::delete_like_api(store, &jk).await.is_ok() {
                                kv::event(
                                    store,
                                    cj,
                                    "Normal",
                                    "SuccessfulDelete",
                                    &format!("Deleted job {}", name(j)),
                                    COMPONENT,
                                )
                                .await;
                            }
                        }
                        active.clear();
                    }
                    _ => {}
                }
            }
            if go {
                match make_job(objects, cj, t).await {
                    Ok(j) => {
                        kv::event(
                            store,
                            cj,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created job {}", name(&j)),
                            COMPONENT,
                        )
                        .await;
                        last_schedule = Some(t);
                        busy = true;
                    }
                    // Made already, by an earlier pass.
                    Err(e) if e.code == 409 => last_schedule = Some(t),
                    Err(e) => {
                        kv::event(
                            store,
                            cj,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating job: {}", e.message),
                            COMPONENT,
                        )
                        .await;
                        busy = true;
                    }
                }
            }
        }
        // Awake for a time coming before the idle wait ends.
        if sched.next_after(now).is_some_and(|n| n - now <= 30) {
            busy = true;
        }
    }
    busy |= clean_history(store, cj, jobs).await;
    let active_refs: Vec<Value> = active.iter().map(|j| job_ref(j)).collect();
    let _ = kv::modify(store, &key, |v| {
        let mut st = v["status"].clone();
        if !st.is_object() {
            st = json!({});
        }
        if active_refs.is_empty() {
            st.as_object_mut().expect("status").remove("active");
        } else {
            st["active"] = json!(active_refs);
        }
        if let Some(t) = last_schedule {
            st["lastScheduleTime"] = json!(time(t));
        }
        if let Some(t) = last_success {
            st["lastSuccessfulTime"] = json!(time(t));
        }
        if st == v["status"] {
            return Change::Keep;
        }
        v["status"] = st;
        Change::Write
    })
    .await;
    busy
}

/// Deletes the oldest finished Jobs beyond the history limits; whether it deleted one.
async fn clean_history(store: &Arc<dyn Store>, cj: &Value, jobs: &[Value]) -> bool {
    let mut deleted = false;
    for (ty, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = cj["spec"][field].as_i64().unwrap_or(default).max(0) as usize;
        let mut done: Vec<&Value> = jobs
            .iter()
            .filter(|j| crate::jobs::condition(j, ty) && !deleting(j))
            .collect();
        if done.len() <= limit {
            continue;
        }
        done.sort_by_key(|j| finish_time(j).unwrap_or(0));
        let extra = done.len() - limit;
        for j in done.into_iter().take(extra) {
            let jk = registry::key("batch", "jobs", Some(namespace(j)), name(j));
            if kv::delete_like_api(store, &jk).await.is_ok() {
                kv::event(
                    store,
                    cj,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {}", name(j)),
                    COMPONENT,
                )
                .await;
                deleted = true;
            }
        }
    }
    deleted
}

async fn make_job(
    objects: &Objects,
    cj: &Value,
    t: i64,
) -> Result<Value, corral_api::status::ApiError> {
    let jt = &cj["spec"]["jobTemplate"];
    let mut meta = json!({
        "name": format!("{}-{}", name(cj), t / 60),
        "namespace": namespace(cj),
        "ownerReferences": [controller_ref(cj, "batch/v1", "CronJob")],
    });
    for f in ["labels", "annotations"] {
        if jt["metadata"][f].is_object() {
            meta[f] = jt["metadata"][f].clone();
        }
    }
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][SCHEDULED] = json!(time(t));
    let job =
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": jt["spec"]});
    kv::create_as_controller(objects, namespace(cj), &job).await
}
