//! The kinds this server serves, and the discovery documents made from them.
//!
//! One table ([`RESOURCES`]) says, per resource: group, version, kind, names, scope, verbs,
//! subresources and the field selectors it accepts. Discovery (legacy `/api`, `/apis` and the
//! aggregated `apidiscovery.k8s.io/v2` form), routing and the OpenAPI listing all read it.

use serde_json::{json, Value};

/// One served resource.
#[derive(Debug)]
pub struct Resource {
    /// The API group ("" for the legacy core group).
    pub group: &'static str,
    /// The version served.
    pub version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The plural name (the path segment).
    pub plural: &'static str,
    /// The singular name.
    pub singular: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `cm` ...).
    pub short: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [&'static str],
    /// Field selectors accepted besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every resource served.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short: &["ns"],
        categories: &[],
        subresources: &["status", "finalize"],
        fields: &["status.phase"],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short: &["po"],
        categories: &["all"],
        subresources: &[
            "status",
            "log",
            "exec",
            "attach",
            "portforward",
            "binding",
            "eviction",
        ],
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short: &["cm"],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &["type"],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short: &["ev"],
        categories: &[],
        subresources: &[],
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short: &["sa"],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short: &["no"],
        categories: &[],
        subresources: &["status"],
        fields: &["spec.unschedulable"],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short: &["pvc"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short: &["pv"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short: &["svc"],
        categories: &["all"],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short: &["ep"],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short: &["deploy"],
        categories: &["all"],
        subresources: &["status", "scale"],
        fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short: &["rs"],
        categories: &["all"],
        subresources: &["status", "scale"],
        fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short: &["sts"],
        categories: &["all"],
        subresources: &["status", "scale"],
        fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short: &["ds"],
        categories: &["all"],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short: &[],
        categories: &["all"],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        short: &["cj"],
        categories: &["all"],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short: &["hpa"],
        categories: &["all"],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "PodMetrics",
        plural: "pods",
        singular: "",
        namespaced: true,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "NodeMetrics",
        plural: "nodes",
        singular: "",
        namespaced: false,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        short: &["pdb"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "corral.dev",
        version: "v1",
        kind: "VirtualMachine",
        plural: "virtualmachines",
        singular: "virtualmachine",
        namespaced: true,
        short: &["vm", "vms"],
        categories: &["all"],
        subresources: &["status"],
        fields: &["status.nodeName"],
    },
    Resource {
        group: "corral.dev",
        version: "v1",
        kind: "VirtualMachineSnapshot",
        plural: "virtualmachinesnapshots",
        singular: "virtualmachinesnapshot",
        namespaced: true,
        short: &["vmsnapshot", "vmsnap"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "corral.dev",
        version: "v1",
        kind: "VirtualMachineClone",
        plural: "virtualmachineclones",
        singular: "virtualmachineclone",
        namespaced: true,
        short: &["vmclone", "vmclones"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "corral.dev",
        version: "v1",
        kind: "VirtualMachineRestore",
        plural: "virtualmachinerestores",
        singular: "virtualmachinerestore",
        namespaced: true,
        short: &["vmrestore", "vmrestores"],
        categories: &[],
        subresources: &["status"],
        fields: &[],
    },
    Resource {
        group: "node.k8s.io",
        version: "v1",
        kind: "RuntimeClass",
        plural: "runtimeclasses",
        singular: "runtimeclass",
        namespaced: false,
        short: &[],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
    Resource {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short: &["sc"],
        categories: &[],
        subresources: &[],
        fields: &[],
    },
];

impl Resource {
    /// Whether the resource is read-only (resource metrics, written by the node agents).
    pub fn read_only(&self) -> bool {
        self.group == "metrics.k8s.io"
    }

    /// The verbs it supports.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.read_only() {
            READ_ONLY_VERBS
        } else {
            VERBS
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as Kubernetes names it in messages (`pods`, `leases.coordination.k8s.io`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The verbs of a subresource.
    fn sub_verbs(sub: &str) -> &'static [&'static str] {
        match sub {
            "status" | "scale" => &["get", "patch", "update"],
            "binding" | "eviction" => &["create"],
            "log" => &["get"],
            "exec" | "attach" | "portforward" => &["create", "get"],
            "finalize" => &["update"],
            _ => &["get"],
        }
    }

    /// Whether `field` is a field selector this resource accepts.
    pub fn accepts_field(&self, field: &str) -> bool {
        field == "metadata.name" || field == "metadata.namespace" || self.fields.contains(&field)
    }
}

/// The resource at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The groups served, in discovery order (core first).
fn groups() -> Vec<&'static str> {
    let mut gs: Vec<&str> = Vec::new();
    for r in RESOURCES {
        if !gs.contains(&r.group) {
            gs.push(r.group);
        }
    }
    gs
}

/// The one version served of group `g`.
fn group_version(g: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.group == g)
        .map_or("v1", |r| r.version)
}

/// What may be done to resources of the read-only groups (metrics).
const READ_ONLY_VERBS: &[&str] = &["get", "list"];

/// `/api`: the legacy group's versions.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// `/apis`: the named groups.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            let v = group_version(g);
            let gv = format!("{g}/{v}");
            json!({"name": g, "versions": [{"groupVersion": gv, "version": v}], "preferredVersion": {"groupVersion": gv, "version": v}})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/GROUP/VERSION`: the resources of one group version; `None` if none.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": r.verbs(), "shortNames": r.short, "categories": r.categories,
        }));
        for s in r.subresources {
            let kind = match *s {
                "binding" => "Binding",
                "eviction" => "Eviction",
                "exec" => "PodExecOptions",
                "attach" => "PodAttachOptions",
                "portforward" => "PodPortForwardOptions",
                "log" => "Pod",
                "scale" => "Scale",
                _ => r.kind,
            };
            let mut sub = json!({"name": format!("{}/{s}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": Resource::sub_verbs(s)});
            if *s == "scale" {
                sub["group"] = json!("autoscaling");
                sub["version"] = json!("v1");
            }
            list.push(sub);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// The aggregated discovery document (`apidiscovery.k8s.io/v2`) for the legacy group
/// (`core` true) or the named groups.
pub fn aggregated(core: bool) -> Value {
    let mut items = Vec::new();
    for g in groups().into_iter().filter(|g| g.is_empty() == core) {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.group == g)
            .map(|r| {
                let subs: Vec<Value> = r
                    .subresources
                    .iter()
                    .map(|s| {
                        let kind = if *s == "scale" {
                            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                        } else {
                            json!({"group": r.group, "version": r.version, "kind": r.kind})
                        };
                        json!({"subresource": s, "responseKind": kind, "verbs": Resource::sub_verbs(s)})
                    })
                    .collect();
                json!({
                    "resource": r.plural, "singularResource": r.singular,
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "verbs": r.verbs(), "shortNames": r.short, "categories": r.categories, "subresources": subs,
                })
            })
            .collect();
        items.push(json!({
            "metadata": {"name": g, "creationTimestamp": null},
            "versions": [{"version": group_version(g), "resources": resources, "freshness": "Current"}],
        }));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_documents() {
        assert_eq!(find("", "v1", "pods").unwrap().kind, "Pod");
        assert_eq!(
            by_kind("coordination.k8s.io/v1", "Lease").unwrap().plural,
            "leases"
        );
        assert!(resource_list("", "v1").unwrap()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/log"));
        assert!(resource_list("apps", "v2").is_none());
        let agg = aggregated(false);
        assert!(agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["name"] != ""));
        assert_eq!(aggregated(true)["items"][0]["metadata"]["name"], "");
    }
}
