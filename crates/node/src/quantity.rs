//! Kubernetes resource quantities (`500m`, `128Mi`, `1Gi`, `2e3`) as numbers, what they mean
//! to the engine (CPU quota and shares, memory limits), and a pod's QoS class by Kubernetes'
//! rules (`pkg/apis/core/v1/helper/qos`).
//!
//! Quantities are read into `f64`: exact for every memory size below 8 PiB and for CPU to the
//! milli-core, which is all the engine's limits can express.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use corral_api::quantity::parse;

/// CPU cores of a quantity (`"500m"` → 0.5).
pub fn cpu_cores(q: &Quantity) -> Option<f64> {
    parse(&q.0)
}

/// Milli-cores of a CPU quantity, rounded up as Kubernetes does (`"0.1"` → 100).
pub fn milli_cpu(q: &Quantity) -> Option<u64> {
    parse(&q.0).map(|c| (c * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Bytes of a memory quantity, rounded up (`"1Gi"` → 1073741824).
pub fn bytes(q: &Quantity) -> Option<u64> {
    parse(&q.0).map(|b| (b - 1e-9).ceil().max(0.0) as u64)
}

/// The kernel CPU shares for a CPU request, as the kubelet computes them
/// (`MilliCPUToShares`: 1024 per core, at least 2).
pub fn cpu_shares(milli: u64) -> u64 {
    (milli * 1024 / 1000).max(2)
}

/// A container's effective requests: its requests, where unset its limits (the API
/// server's defaulting does this too; a store written by something else may not).
fn requests(c: &Container) -> BTreeMap<String, Quantity> {
    let r = c.resources.clone().unwrap_or_default();
    let mut out = r.limits.unwrap_or_default();
    out.extend(r.requests.unwrap_or_default());
    out
}

fn limits(c: &Container) -> BTreeMap<String, Quantity> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default()
}

/// The pod's QoS class: `BestEffort` (no CPU or memory request or limit anywhere),
/// `Guaranteed` (every container limits CPU and memory, with requests equal to limits), else
/// `Burstable`. Init containers count, as in Kubernetes.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let tracked = ["cpu", "memory"];
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let req = requests(c);
        let lim = limits(c);
        let nonzero = |m: &BTreeMap<String, Quantity>, k: &str| {
            m.get(k).and_then(|q| parse(&q.0)).is_some_and(|v| v > 0.0)
        };
        for k in tracked {
            if nonzero(&req, k) || nonzero(&lim, k) {
                any = true;
            }
            let (Some(l), Some(r)) = (lim.get(k), req.get(k)) else {
                guaranteed = false;
                continue;
            };
            if parse(&l.0) != parse(&r.0) || !nonzero(&lim, k) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn quantities_parse_in_every_suffix() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("0.25"), Some(0.25));
        assert_eq!(parse("128Mi"), Some(134_217_728.0));
        assert_eq!(parse("1Gi"), Some(1_073_741_824.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("24568964Ki"), Some(24_568_964.0 * 1024.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("1E"), Some(1e18));
        assert_eq!(parse("12k"), Some(12_000.0));
        assert_eq!(parse(""), None);
        assert_eq!(parse("Mi"), None);
        assert_eq!(parse("5 apples"), None);
        assert_eq!(milli_cpu(&q("500m")), Some(500));
        assert_eq!(milli_cpu(&q("0.1")), Some(100));
        assert_eq!(milli_cpu(&q("1")), Some(1000));
        assert_eq!(bytes(&q("1Gi")), Some(1 << 30));
        assert_eq!(bytes(&q("64M")), Some(64_000_000));
        assert_eq!(cpu_shares(500), 512);
        assert_eq!(cpu_shares(1), 2);
    }

    fn container(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |l: &[(&str, &str)]| -> Option<BTreeMap<String, Quantity>> {
            (!l.is_empty()).then(|| l.iter().map(|(k, v)| (k.to_string(), q(v))).collect())
        };
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(cs: Vec<Container>) -> PodSpec {
        PodSpec {
            containers: cs,
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes_follow_kubernetes_rules() {
        assert_eq!(
            qos_class(&pod(vec![container("a", &[], &[])])),
            "BestEffort"
        );
        let full = [("cpu", "500m"), ("memory", "128Mi")];
        assert_eq!(
            qos_class(&pod(vec![container("a", &full, &full)])),
            "Guaranteed"
        );
        // Limits alone: requests default to them.
        assert_eq!(
            qos_class(&pod(vec![container("a", &[], &full)])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(vec![container("a", &[("cpu", "100m")], &[])])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(vec![container(
                "a",
                &[("cpu", "250m"), ("memory", "128Mi")],
                &full
            )])),
            "Burstable"
        );
        // One container without limits makes the pod Burstable.
        assert_eq!(
            qos_class(&pod(vec![
                container("a", &full, &full),
                container("b", &[], &[])
            ])),
            "Burstable"
        );
        // Equal values in other units are equal.
        assert_eq!(
            qos_class(&pod(vec![container(
                "a",
                &[("cpu", "0.5"), ("memory", "134217728")],
                &full
            )])),
            "Guaranteed"
        );
    }
}
