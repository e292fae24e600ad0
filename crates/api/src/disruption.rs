//! `policy/v1` PodDisruptionBudgets: the API's rules for them, and the eviction subresource
//! that honours them (what `kubectl drain` calls).
//!
//! An eviction of a pod that one budget selects is allowed while the budget's
//! `status.disruptionsAllowed` (kept by corral-control's disruption controller) is above
//! zero: the eviction takes one (written with the budget's resourceVersion, so two evictions
//! cannot both take the last one) and records the pod in `status.disruptedPods`, then
//! deletes the pod. Otherwise it is refused with 429 TooManyRequests, as Kubernetes refuses
//! it, and `kubectl drain` retries. A pod that is not Ready may go while the budget holds
//! (`unhealthyPodEvictionPolicy: IfHealthyBudget`, the default; `AlwaysAllow` lets it go
//! always); a finished pod always goes. A pod that two budgets select cannot be evicted (500,
//! as in Kubernetes).

use serde_json::{json, Value};

use crate::objects::{DeleteOptions, ListOptions, Objects, WriteOptions};
use crate::resources::{self, Resource};
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::workloads::int_or_percent;

/// A budget's own rules: one of `minAvailable` and `maxUnavailable`, each an integer or a
/// percentage, and a valid selector.
pub(crate) fn check(r: &Resource, v: &Value) -> Result<(), ApiError> {
    if r.kind != "PodDisruptionBudget" {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let spec = &v["spec"];
    let mut causes: Vec<(String, String)> = Vec::new();
    let (min, max) = (&spec["minAvailable"], &spec["maxUnavailable"]);
    if !min.is_null() && !max.is_null() {
        causes.push((
            "spec".into(),
            "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
        ));
    }
    for (f, val) in [("minAvailable", min), ("maxUnavailable", max)] {
        if !val.is_null() && int_or_percent(val).is_none() {
            causes.push((
                format!("spec.{f}"),
                format!("Invalid value: {val}: must be a non-negative integer or a percentage"),
            ));
        }
    }
    if !spec["selector"].is_null() {
        if let Err(e) = LabelSelector::from_k8s(&spec["selector"]) {
            causes.push(("spec.selector".into(), format!("Invalid value: {e}")));
        }
    }
    match spec["unhealthyPodEvictionPolicy"].as_str() {
        None | Some("IfHealthyBudget" | "AlwaysAllow") => {}
        Some(other) => causes.push((
            "spec.unhealthyPodEvictionPolicy".into(),
            format!("Unsupported value: \"{other}\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""),
        )),
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// POST `pods/NAME/eviction`: deletes the pod if its budget allows.
pub async fn evict(
    objects: &Objects,
    ns: &str,
    name: &str,
    delete: &DeleteOptions,
) -> Result<(), ApiError> {
    let pods = resources::find("", "v1", "pods").expect("pods are served");
    let pdbs = resources::find("policy", "v1", "poddisruptionbudgets").expect("budgets are served");
    for _ in 0..8 {
        let pod = objects.get(pods, Some(ns), name).await?;
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let list = objects
            .list(pdbs, Some(ns), &ListOptions::default())
            .await?
            .items;
        let mine: Vec<&Value> = list
            .iter()
            .filter(|b| {
                LabelSelector::from_k8s(&b["spec"]["selector"]).is_ok_and(|s| {
                    !b["spec"]["selector"].is_null()
                        && s.matches(pod.get("metadata").and_then(|m| m.get("labels")))
                })
            })
            .collect();
        if finished || pod["metadata"]["deletionTimestamp"].is_string() || mine.is_empty() {
            objects.delete(pods, Some(ns), name, delete).await?;
            return Ok(());
        }
        if mine.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let b = mine[0];
        let st = &b["status"];
        let (healthy, desired) = (
            st["currentHealthy"].as_i64().unwrap_or(0),
            st["desiredHealthy"].as_i64().unwrap_or(0),
        );
        let observed = st["observedGeneration"] == b["metadata"]["generation"];
        if !ready(&pod) {
            let always = b["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
            if always || (observed && healthy >= desired) {
                objects.delete(pods, Some(ns), name, delete).await?;
                return Ok(());
            }
        }
        let allowed = st["disruptionsAllowed"].as_i64().unwrap_or(0);
        let bname = b["metadata"]["name"].as_str().unwrap_or("");
        if !observed || allowed <= 0 {
            let why = if observed {
                format!("The disruption budget {bname} needs {desired} healthy pods and has {healthy} currently")
            } else {
                format!("The disruption budget {bname} is still being processed by the server.")
            };
            return Err(ApiError::too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
            .with_causes(vec![("DisruptionBudget".into(), why)]));
        }
        let mut new = b.clone();
        new["status"]["disruptionsAllowed"] = json!(allowed - 1);
        new["status"]["disruptedPods"][name] = json!(crate::objects::now_rfc3339());
        let rev = b["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let wo = WriteOptions {
            field_manager: "kube-apiserver".into(),
            ..Default::default()
        };
        match objects.write(pdbs, Some(ns), bname, b, new, rev, &wo).await {
            Ok(_) => {
                objects.delete(pods, Some(ns), name, delete).await?;
                return Ok(());
            }
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::too_many_requests(
        "Cannot evict pod: its disruption budget is changing; try again",
    ))
}
