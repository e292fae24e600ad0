//! The `autoscaling/v2` HorizontalPodAutoscaler's API rules: its defaults (Kubernetes': one
//! replica at least, 80% CPU when no metric is given, the default scaling `behavior`) and
//! what a write must satisfy.

use serde_json::{json, Value};

use crate::resources::Resource;
use crate::status::ApiError;
use crate::validate::set_default;

/// Kubernetes' defaults for a HorizontalPodAutoscaler.
pub(crate) fn defaults(obj: &mut Value) {
    let Some(spec) = obj["spec"].as_object_mut() else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .is_none_or(|m| m.as_array().is_none_or(Vec::is_empty))
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let b = spec.entry("behavior").or_insert(json!({}));
    let Some(b) = b.as_object_mut() else { return };
    let up = b.entry("scaleUp").or_insert(json!({}));
    if let Some(up) = up.as_object_mut() {
        set_default(up, "stabilizationWindowSeconds", json!(0));
        set_default(up, "selectPolicy", json!("Max"));
        set_default(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                   {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
    let down = b.entry("scaleDown").or_insert(json!({}));
    if let Some(down) = down.as_object_mut() {
        set_default(down, "stabilizationWindowSeconds", json!(300));
        set_default(down, "selectPolicy", json!("Max"));
        set_default(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

/// A HorizontalPodAutoscaler's own rules.
pub(crate) fn check(r: &Resource, v: &Value) -> Result<(), ApiError> {
    if r.kind != "HorizontalPodAutoscaler" {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let spec = &v["spec"];
    let mut causes: Vec<(String, String)> = Vec::new();
    let target = &spec["scaleTargetRef"];
    for f in ["kind", "name"] {
        if target[f].as_str().is_none_or(str::is_empty) {
            causes.push((format!("spec.scaleTargetRef.{f}"), "Required value".into()));
        }
    }
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    if min < 1 {
        causes.push((
            "spec.minReplicas".into(),
            format!("Invalid value: {min}: must be greater than or equal to 1"),
        ));
    }
    match spec["maxReplicas"].as_i64() {
        None => causes.push(("spec.maxReplicas".into(), "Required value".into())),
        Some(max) if max < min => causes.push((
            "spec.maxReplicas".into(),
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        )),
        Some(_) => {}
    }
    for (i, m) in spec["metrics"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.metrics[{i}]");
        match m["type"].as_str() {
            Some("Resource" | "ContainerResource") => {
                let src = if m["type"] == "Resource" {
                    &m["resource"]
                } else {
                    &m["containerResource"]
                };
                match src["name"].as_str() {
                    Some("cpu" | "memory") => {}
                    other => causes.push((
                        format!("{at}.resource.name"),
                        format!("Unsupported value: {other:?}: supported values: \"cpu\", \"memory\""),
                    )),
                }
                let t = &src["target"];
                match t["type"].as_str() {
                    Some("Utilization") if t["averageUtilization"].as_i64().is_some_and(|u| u > 0) => {}
                    Some("AverageValue") if t["averageValue"].is_string() || t["averageValue"].is_number() => {}
                    _ => causes.push((
                        format!("{at}.resource.target"),
                        "Invalid value: must set Utilization with a positive averageUtilization, or AverageValue with averageValue".into(),
                    )),
                }
            }
            Some(other) => causes.push((
                format!("{at}.type"),
                format!("Unsupported value: \"{other}\": corral reads \"Resource\" and \"ContainerResource\" metrics (from metrics.k8s.io)"),
            )),
            None => causes.push((format!("{at}.type"), "Required value".into())),
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}
