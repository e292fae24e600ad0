//! Which lists of the built-in kinds merge element by element, and on what key: the
//! `patchStrategy`/`patchMergeKey` tags of `k8s.io/api` (and the `listType=map`/`listMapKeys` of
//! server-side apply), kept as data tables.
//!
//! A path is the dotted chain of field names from the object's root to the list, list
//! positions left out: `spec.containers.env` is the `env` of any container. Lists not found here
//! are atomic: a patch replaces them whole. To support another list, add a row; to support
//! another kind with a pod template, add it to [`POD_SPEC_AT`].
//!
//! Limit: Kubernetes keys a few lists on two fields for server-side apply (container ports on
//! `containerPort` + `protocol`, Service ports on `port` + `protocol`); here every list has one
//! key, the strategic-merge one, for both patch kinds.

/// How a list merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Elements are maps, merged with the element of the same value of this field.
    MergeKey(&'static str),
    /// Elements are scalars, merged as a set (union), as `metadata.finalizers`.
    Set,
}

use ListStrategy::{MergeKey, Set};

/// Every kind.
const ANY: &[&str] = &[];

/// Lists that merge in any kind, or in the kinds named (path from the object's root).
const BY_KIND: &[(&[&str], &str, ListStrategy)] = &[
    (ANY, "metadata.ownerReferences", MergeKey("uid")),
    (ANY, "metadata.finalizers", Set),
    // Conditions are keyed on `type` throughout the built-in API (`metav1.Condition` and the
    // per-kind condition types alike).
    (ANY, "status.conditions", MergeKey("type")),
    (&["Pod"], "status.containerStatuses", MergeKey("name")),
    (&["Pod"], "status.initContainerStatuses", MergeKey("name")),
    (
        &["Pod"],
        "status.ephemeralContainerStatuses",
        MergeKey("name"),
    ),
    (&["Pod"], "status.podIPs", MergeKey("ip")),
    (&["Pod"], "status.hostIPs", MergeKey("ip")),
    (&["Service"], "spec.ports", MergeKey("port")),
    (&["Node"], "spec.taints", MergeKey("key")),
    (&["Node"], "status.addresses", MergeKey("type")),
    (&["Node"], "status.volumesAttached", MergeKey("name")),
    (&["ServiceAccount"], "secrets", MergeKey("name")),
];

/// Where each kind keeps a pod spec.
pub const POD_SPEC_AT: &[(&[&str], &str)] = &[
    (&["Pod"], "spec"),
    (&["PodTemplate"], "template.spec"),
    (
        &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ],
        "spec.template.spec",
    ),
    (&["CronJob"], "spec.jobTemplate.spec.template.spec"),
];

/// Lists of a pod spec, from the pod spec.
const POD_SPEC: &[(&str, ListStrategy)] = &[
    ("containers", MergeKey("name")),
    ("initContainers", MergeKey("name")),
    ("ephemeralContainers", MergeKey("name")),
    ("volumes", MergeKey("name")),
    ("imagePullSecrets", MergeKey("name")),
    ("hostAliases", MergeKey("ip")),
    ("topologySpreadConstraints", MergeKey("topologyKey")),
    ("resourceClaims", MergeKey("name")),
    ("schedulingGates", MergeKey("name")),
];

/// The fields of a pod spec that hold containers.
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Lists of a container, from the container.
const CONTAINER: &[(&str, ListStrategy)] = &[
    ("ports", MergeKey("containerPort")),
    ("env", MergeKey("name")),
    ("volumeMounts", MergeKey("mountPath")),
    ("volumeDevices", MergeKey("devicePath")),
    ("resizePolicy", MergeKey("resourceName")),
    ("resources.claims", MergeKey("name")),
];

/// How the list at `path` (dotted, from the root of an object of `kind`) merges; `None` means
/// atomic (replaced whole).
pub fn list_strategy(kind: &str, path: &str) -> Option<ListStrategy> {
    let kind_matches = |kinds: &[&str]| kinds.is_empty() || kinds.contains(&kind);
    if let Some((_, _, strategy)) = BY_KIND
        .iter()
        .find(|(kinds, p, _)| *p == path && kind_matches(kinds))
    {
        return Some(*strategy);
    }
    let in_pod_spec = POD_SPEC_AT
        .iter()
        .filter(|(kinds, _)| kind_matches(kinds))
        .find_map(|(_, prefix)| path.strip_prefix(prefix)?.strip_prefix('.'))?;
    pod_spec_list(in_pod_spec)
}

fn pod_spec_list(path: &str) -> Option<ListStrategy> {
    if let Some((_, strategy)) = POD_SPEC.iter().find(|(p, _)| *p == path) {
        return Some(*strategy);
    }
    let (list, rest) = path.split_once('.')?;
    if !CONTAINER_LISTS.contains(&list) {
        return None;
    }
    CONTAINER
        .iter()
        .find(|(p, _)| *p == rest)
        .map(|(_, strategy)| *strategy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_lists_have_their_keys() {
        assert_eq!(
            list_strategy("Pod", "spec.containers"),
            Some(MergeKey("name"))
        );
        assert_eq!(
            list_strategy("Pod", "spec.containers.ports"),
            Some(MergeKey("containerPort"))
        );
        assert_eq!(
            list_strategy("Pod", "spec.initContainers.volumeMounts"),
            Some(MergeKey("mountPath"))
        );
        assert_eq!(list_strategy("Pod", "spec.volumes"), Some(MergeKey("name")));
        assert_eq!(list_strategy("Pod", "spec.tolerations"), None);
        assert_eq!(list_strategy("Pod", "spec.containers.args"), None);
        assert_eq!(
            list_strategy("Pod", "status.conditions"),
            Some(MergeKey("type"))
        );
    }

    #[test]
    fn templates_share_the_pod_table() {
        assert_eq!(
            list_strategy("Deployment", "spec.template.spec.containers.env"),
            Some(MergeKey("name"))
        );
        assert_eq!(
            list_strategy("CronJob", "spec.jobTemplate.spec.template.spec.containers"),
            Some(MergeKey("name"))
        );
        // A Deployment has no pod spec at `spec`.
        assert_eq!(list_strategy("Deployment", "spec.containers"), None);
    }

    #[test]
    fn kind_lists_have_their_keys() {
        assert_eq!(
            list_strategy("Service", "spec.ports"),
            Some(MergeKey("port"))
        );
        assert_eq!(list_strategy("Node", "spec.taints"), Some(MergeKey("key")));
        assert_eq!(list_strategy("ConfigMap", "metadata.finalizers"), Some(Set));
        assert_eq!(
            list_strategy("Widget", "metadata.ownerReferences"),
            Some(MergeKey("uid"))
        );
        assert_eq!(list_strategy("Widget", "spec.ports"), None);
    }
}
