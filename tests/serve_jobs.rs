//! End-to-end tests of Jobs and CronJobs on `corral serve`, driven with the real `kubectl` as a
//! user drives a cluster: a Job runs to completion (`kubectl wait --for=condition=complete`,
//! `kubectl logs job/NAME`), a parallel Job makes exactly as many pods as completions and never
//! more than `parallelism` at once, an Indexed Job gives each pod its index, a failing Job
//! stops at its backoff limit, a Job over its deadline is failed and its pod ended, a finished
//! Job with a TTL is deleted, and a CronJob fires on its schedule. Bad input gets 422.

use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;
use serde_json::Value;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn job_pods(s: &Serve, job: &str) -> Vec<Value> {
    let v = s.json(&["get", "pods", "-l", &format!("job-name={job}")]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn condition(j: &Value, ty: &str) -> Option<Value> {
    j["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
        .cloned()
}

/// `kubectl wait` for a Job's condition, with what the server knows when it does not come.
fn wait_condition(s: &Serve, job: &str, cond: &str, secs: u64) {
    let o = s.kubectl(&[
        "wait",
        &format!("--for=condition={cond}"),
        &format!("job/{job}"),
        &format!("--timeout={secs}s"),
    ]);
    assert!(
        o.status.success(),
        "job {job} never became {cond}: {}\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        s.ok(&["get", "jobs,pods", "-o", "wide"]),
        s.ok(&["get", "events", "--sort-by=.lastTimestamp"]),
        s.log()
    );
}

const PARALLEL: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: work
spec:
  completions: 4
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "sleep 1; echo done"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
"#;

const FAILING: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: broken
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "exit 3"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: slow
spec:
  activeDeadlineSeconds: 3
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sleep", "600"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: brief
spec:
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: OnFailure
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["true"]
"#;

#[test]
fn jobs_run_to_completion_in_parallel_by_index_and_stop_on_failure() {
    let Some(s) = Serve::start("jobs_run_to_completion_in_parallel_by_index_and_stop_on_failure")
    else {
        return;
    };
    // The simplest Job, as a user makes it (kubectl sends it as protobuf).
    s.ok(&[
        "create",
        "job",
        "hello",
        "--image=busybox:test",
        "--",
        "sh",
        "-c",
        "echo hello from a job",
    ]);
    s.apply(PARALLEL, &[]);
    s.apply(FAILING, &[]);
    wait_condition(&s, "hello", "complete", 120);
    assert_eq!(
        s.ok(&["logs", "job/hello"]).trim(),
        "hello from a job",
        "kubectl logs job/hello"
    );
    let table = s.ok(&["get", "job", "hello"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hello ") && l.contains("Complete") && l.contains("1/1")),
        "{table}"
    );
    let hello = s.json(&["get", "job", "hello"]);
    assert!(hello["status"]["completionTime"].is_string(), "{hello}");
    assert_eq!(hello["status"]["succeeded"], 1, "{hello}");

    // Four completions two at a time: exactly four pods, never more than two running.
    let mut most = 0;
    wait_for("job work to complete", Duration::from_secs(180), || {
        let pods = job_pods(&s, "work");
        let running = pods
            .iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        most = most.max(running);
        condition(&s.json(&["get", "job", "work"]), "Complete").is_some()
    });
    let pods = job_pods(&s, "work");
    assert_eq!(
        pods.len(),
        4,
        "{}",
        s.ok(&["get", "pods", "-l", "job-name=work"])
    );
    assert!(
        pods.iter().all(|p| p["status"]["phase"] == "Succeeded"),
        "{}",
        s.ok(&["get", "pods", "-l", "job-name=work"])
    );
    assert!(
        most <= 2,
        "{most} pods of job work ran at once (parallelism 2)"
    );
    let work = s.json(&["get", "job", "work"]);
    assert_eq!(work["status"]["succeeded"], 4, "{work}");
    assert_eq!(work["status"]["active"], 0, "{work}");
    for p in &pods {
        let fin = p["metadata"]["finalizers"].as_array().map_or(0, Vec::len);
        assert_eq!(fin, 0, "a counted pod keeps its tracking finalizer: {p}");
    }

    // Each index once, each pod knowing its own.
    wait_condition(&s, "indexed", "complete", 180);
    let indexed = s.json(&["get", "job", "indexed"]);
    assert_eq!(indexed["status"]["completedIndexes"], "0-2", "{indexed}");
    let mut seen: Vec<String> = job_pods(&s, "indexed")
        .iter()
        .map(|p| {
            s.ok(&["logs", p["metadata"]["name"].as_str().unwrap()])
                .trim()
                .to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "index=0 host=indexed-0",
            "index=1 host=indexed-1",
            "index=2 host=indexed-2"
        ]
    );

    // A pod that always fails: one retry (after the back-off), then the Job fails.
    wait_condition(&s, "broken", "failed", 120);
    let broken = s.json(&["get", "job", "broken"]);
    let c = condition(&broken, "Failed").unwrap();
    assert_eq!(c["reason"], "BackoffLimitExceeded", "{broken}");
    assert_eq!(broken["status"]["failed"], 2, "{broken}");
    assert_eq!(job_pods(&s, "broken").len(), 2);

    // Over its deadline: failed, and its pod ended.
    wait_condition(&s, "slow", "failed", 60);
    let slow = s.json(&["get", "job", "slow"]);
    assert_eq!(
        condition(&slow, "Failed").unwrap()["reason"],
        "DeadlineExceeded",
        "{slow}"
    );
    wait_for("job slow's pod to end", Duration::from_secs(60), || {
        job_pods(&s, "slow")
            .iter()
            .all(|p| p["status"]["phase"] == "Failed")
    });

    // Finished with a TTL: deleted, with its pod.
    wait_for("job brief to be deleted", Duration::from_secs(90), || {
        !s.kubectl(&["get", "job", "brief"]).status.success()
    });
    wait_for("job brief's pods to go", Duration::from_secs(60), || {
        job_pods(&s, "brief").is_empty()
    });

    // Deleting a Job removes its pods.
    s.ok(&["delete", "job", "work", "--wait=true", "--timeout=60s"]);
    wait_for("job work's pods to go", Duration::from_secs(60), || {
        job_pods(&s, "work").is_empty()
    });

    // Bad Jobs are refused as Kubernetes refuses them.
    let bad = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  template:
    spec:
      restartPolicy: Always
      containers: [{name: c, image: busybox:test}]
"#;
    let o = s.kubectl_in(&["apply", "-f", "-"], bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is invalid")
            && err.contains("spec.template.spec.restartPolicy")
            && err.contains("Unsupported value: \"Always\""),
        "{err}"
    );
    let o = s.kubectl(&[
        "patch",
        "job",
        "hello",
        "--type=merge",
        "-p",
        r#"{"spec":{"completions":5}}"#,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("field is immutable"), "{err}");
}

#[test]
fn a_cron_job_fires_on_its_schedule() {
    let Some(s) = Serve::start("a_cron_job_fires_on_its_schedule") else {
        return;
    };
    s.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:test",
        "--schedule=* * * * *",
        "--",
        "sh",
        "-c",
        "echo tick",
    ]);
    let table = s.ok(&["get", "cronjob", "tick"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tick ") && l.contains("* * * * *") && l.contains("False")),
        "{table}"
    );
    // The next minute starts a Job, which completes.
    let mut job = String::new();
    wait_for("the CronJob's first Job", Duration::from_secs(100), || {
        let v = s.json(&["get", "jobs"]);
        let names: Vec<String> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick")
            .map(|j| j["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        match names.first() {
            Some(n) => {
                job = n.clone();
                true
            }
            None => false,
        }
    });
    assert!(job.starts_with("tick-"), "{job}");
    wait_condition(&s, &job, "complete", 120);
    assert_eq!(s.ok(&["logs", &format!("job/{job}")]).trim(), "tick");
    let cj = s.json(&["get", "cronjob", "tick"]);
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
    wait_for("lastSuccessfulTime", Duration::from_secs(30), || {
        s.json(&["get", "cronjob", "tick"])["status"]["lastSuccessfulTime"].is_string()
    });
    let j = s.json(&["get", "job", &job]);
    assert!(
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00Z")),
        "{j}"
    );
    // A run by hand from the CronJob's template.
    s.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    wait_condition(&s, "by-hand", "complete", 120);
    assert_eq!(s.ok(&["logs", "job/by-hand"]).trim(), "tick");
    // Suspended: nothing more starts.
    s.ok(&[
        "patch",
        "cronjob",
        "tick",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    // A bad schedule is refused.
    let bad = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: bad}
spec:
  schedule: "61 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox:test}]
"#;
    let o = s.kubectl_in(&["apply", "-f", "-"], bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("spec.schedule") && err.contains("0-59"),
        "{err}"
    );
    // Deleting the CronJob removes its Jobs and their pods.
    s.ok(&["delete", "cronjob", "tick", "--wait=true", "--timeout=60s"]);
    wait_for("the CronJob's Jobs to go", Duration::from_secs(60), || {
        s.json(&["get", "jobs"])["items"]
            .as_array()
            .is_none_or(Vec::is_empty)
    });
}
