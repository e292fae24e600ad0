//! The `batch/v1` kinds' API rules: what a Job and a CronJob default to on create, what a
//! write must satisfy, and what may not change.
//!
//! A Job's selector is the server's, as in Kubernetes: on create the Job gets
//! `batch.kubernetes.io/controller-uid=<its uid>` as selector and the template gets that label
//! and `batch.kubernetes.io/job-name` (and the legacy `controller-uid` and `job-name`), unless
//! `spec.manualSelector` is true. Pod templates must restart `Never` or `OnFailure`.

use serde_json::{json, Map, Value};

use crate::cron::Schedule;
use crate::resources::Resource;
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::validate;
use crate::validate::set_default;

/// A Job spec's defaults (a Job's, or a CronJob's job template's).
fn job_spec_defaults(spec: &mut Map<String, Value>) {
    let completions_unset = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    if completions_unset && parallelism_unset {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(ps) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        // The pod defaults would make it `Always`, which a Job refuses: left unset, the
        // check below says it is required.
        let had_policy = ps.get("restartPolicy").is_some_and(|p| !p.is_null());
        validate::pod_spec_defaults(ps);
        if !had_policy {
            ps.remove("restartPolicy");
        }
    }
}

/// Kubernetes' defaults for a Job or CronJob on create.
pub(crate) fn defaults(kind: &str, obj: &mut Value) {
    match kind {
        "Job" => {
            let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let Some(spec) = obj["spec"].as_object_mut() else {
                return;
            };
            job_spec_defaults(spec);
            if spec.get("manualSelector") != Some(&json!(true)) {
                let labels = json!({
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": uid,
                    "job-name": name,
                });
                if spec.get("selector").is_none_or(Value::is_null) {
                    spec.insert(
                        "selector".into(),
                        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                    );
                }
                let t = spec.entry("template").or_insert(json!({}));
                if let Some(t) = t.as_object_mut() {
                    let meta = t.entry("metadata").or_insert(json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        let l = meta.entry("labels").or_insert(json!({}));
                        if let Some(l) = l.as_object_mut() {
                            for (k, v) in labels.as_object().expect("object") {
                                l.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
            }
        }
        "CronJob" => {
            let Some(spec) = obj["spec"].as_object_mut() else {
                return;
            };
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(js) = spec
                .get_mut("jobTemplate")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                job_spec_defaults(js);
            }
        }
        _ => {}
    }
}

/// The causes of a Job spec at `at` (`spec` or `spec.jobTemplate.spec`).
fn job_spec_causes(spec: &Value, at: &str, with_selector: bool) -> Vec<(String, String)> {
    let mut causes: Vec<(String, String)> = Vec::new();
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = spec[f].as_i64() {
            let least = if f == "activeDeadlineSeconds" { 1 } else { 0 };
            if n < least {
                causes.push((
                    format!("{at}.{f}"),
                    format!("Invalid value: {n}: must be greater than or equal to {least}"),
                ));
            }
        } else if !spec[f].is_null() {
            causes.push((
                format!("{at}.{f}"),
                format!("Invalid value: {}: must be an integer", spec[f]),
            ));
        }
    }
    match spec["completionMode"].as_str() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec["completions"].as_i64().is_none() {
                causes.push((
                    format!("{at}.completions"),
                    "Required value: when completion mode is Indexed".into(),
                ));
            }
        }
        Some(other) => causes.push((
            format!("{at}.completionMode"),
            format!(
                "Unsupported value: \"{other}\": supported values: \"NonIndexed\", \"Indexed\""
            ),
        )),
    }
    let ps = &spec["template"]["spec"];
    let t = format!("{at}.template.spec");
    causes.extend(crate::objects::pod_spec_causes(ps, &t));
    match ps["restartPolicy"].as_str() {
        Some("OnFailure" | "Never") => {}
        None => causes.push((
            format!("{t}.restartPolicy"),
            "Required value: valid values: \"OnFailure\", \"Never\"".into(),
        )),
        Some(other) => causes.push((
            format!("{t}.restartPolicy"),
            format!("Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""),
        )),
    }
    if with_selector {
        match LabelSelector::from_k8s(&spec["selector"]) {
            _ if spec["selector"].is_null() => {
                causes.push((format!("{at}.selector"), "Required value".into()))
            }
            Err(e) => causes.push((format!("{at}.selector"), format!("Invalid value: {e}"))),
            Ok(s) => {
                let labels = &spec["template"]["metadata"]["labels"];
                if !s.matches(Some(labels)) {
                    causes.push((
                        format!("{at}.template.metadata.labels"),
                        format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            compact(labels)
                        ),
                    ));
                }
            }
        }
    }
    causes
}

/// A Job's or CronJob's own rules.
pub(crate) fn check(r: &Resource, v: &Value) -> Result<(), ApiError> {
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let causes = match r.kind {
        "Job" => job_spec_causes(&v["spec"], "spec", true),
        "CronJob" => {
            let spec = &v["spec"];
            let mut causes = Vec::new();
            // The controller names its Jobs `<name>-<minutes>` (11 more characters), and
            // those name their pods: 52 leaves room, Kubernetes' limit.
            if name.len() > 52 {
                causes.push((
                    "metadata.name".into(),
                    format!("Invalid value: \"{name}\": must be no more than 52 characters"),
                ));
            }
            match spec["schedule"].as_str() {
                None => causes.push(("spec.schedule".into(), "Required value".into())),
                Some(s) => {
                    if let Err(e) = s.parse::<Schedule>() {
                        causes.push((
                            "spec.schedule".into(),
                            format!("Invalid value: \"{s}\": {e}"),
                        ));
                    }
                }
            }
            match spec["timeZone"].as_str() {
                None | Some("UTC" | "Etc/UTC") => {}
                Some(tz) => causes.push((
                    "spec.timeZone".into(),
                    format!("Invalid value: \"{tz}\": corral schedules in UTC only (leave it unset or use \"UTC\")"),
                )),
            }
            match spec["concurrencyPolicy"].as_str() {
                None | Some("Allow" | "Forbid" | "Replace") => {}
                Some(other) => causes.push((
                    "spec.concurrencyPolicy".into(),
                    format!("Unsupported value: \"{other}\": supported values: \"Allow\", \"Forbid\", \"Replace\""),
                )),
            }
            for f in [
                "startingDeadlineSeconds",
                "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit",
            ] {
                if spec[f].as_i64().is_some_and(|n| n < 0) {
                    causes.push((
                        format!("spec.{f}"),
                        "Invalid value: must be greater than or equal to 0".into(),
                    ));
                }
            }
            causes.extend(job_spec_causes(
                &spec["jobTemplate"]["spec"],
                "spec.jobTemplate.spec",
                false,
            ));
            causes
        }
        _ => return Ok(()),
    };
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

/// A Job's selector, pod template, completion mode and (unless Indexed) completions do not
/// change after create.
pub(crate) fn check_update(r: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    if r.kind != "Job" {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    let mut causes = Vec::new();
    for f in ["selector", "template", "completionMode", "completions"] {
        if old["spec"][f] != new["spec"][f] {
            causes.push((
                format!("spec.{f}"),
                format!(
                    "Invalid value: {}: field is immutable",
                    compact(&new["spec"][f])
                ),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec})
    }

    fn r(kind: &str) -> &'static Resource {
        crate::resources::RESOURCES
            .iter()
            .find(|x| x.kind == kind)
            .unwrap()
    }

    #[test]
    fn a_job_gets_the_servers_selector_and_labels() {
        let mut j = job(json!({"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}));
        defaults("Job", &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        check(r("Job"), &j).unwrap();
    }

    #[test]
    fn a_job_must_not_restart_always() {
        let mut j = job(json!({"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}));
        defaults("Job", &mut j);
        let e = check(r("Job"), &j).unwrap_err();
        assert!(
            format!("{e:?}").contains("spec.template.spec.restartPolicy"),
            "{e:?}"
        );
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let e = check(r("Job"), &j).unwrap_err();
        assert!(format!("{e:?}").contains("Unsupported value"), "{e:?}");
    }

    #[test]
    fn a_cron_job_checks_its_schedule_and_time_zone() {
        let mut c = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "uid": "u-2"},
            "spec": {"schedule": "61 * * * *", "timeZone": "Europe/Paris",
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        defaults("CronJob", &mut c);
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        let e = format!("{:?}", check(r("CronJob"), &c).unwrap_err());
        assert!(
            e.contains("spec.schedule") && e.contains("spec.timeZone"),
            "{e}"
        );
        c["spec"]["schedule"] = json!("*/1 * * * *");
        c["spec"]["timeZone"] = json!("UTC");
        check(r("CronJob"), &c).unwrap();
    }
}
