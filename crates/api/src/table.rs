//! Server-side Tables (`as=Table`): the columns `kubectl get` prints, per kind, computed the
//! way kubectl's own printers compute them (a pod's STATUS from its containers' states).

use serde_json::{json, Value};

use crate::objects::{parse_rfc3339, ListPage};
use crate::resources::Resource;

/// A column: name, type, and priority (1: only with `-o wide`).
type Column = (&'static str, &'static str, u8);

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Namespace" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        "Node" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "ConfigMap" => vec![
            ("Name", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "Secret" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "ServiceAccount" => vec![
            ("Name", "string", 0),
            ("Secrets", "integer", 0),
            ("Age", "string", 0),
        ],
        "Event" => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "Lease" => vec![
            ("Name", "string", 0),
            ("Holder", "string", 0),
            ("Age", "string", 0),
        ],
        "RuntimeClass" => vec![
            ("Name", "string", 0),
            ("Handler", "string", 0),
            ("Age", "string", 0),
        ],
        "StorageClass" => vec![
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        "PersistentVolumeClaim" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("Age", "string", 0),
        ],
        "PersistentVolume" => vec![
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("Age", "string", 0),
        ],
        "Service" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Endpoints" => vec![
            ("Name", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "EndpointSlice" => vec![
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "Deployment" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ControllerRevision" => vec![
            ("Name", "string", 0),
            ("Controller", "string", 0),
            ("Revision", "integer", 0),
            ("Age", "string", 0),
        ],
        "ReplicaSet" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "StatefulSet" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "DaemonSet" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "VirtualMachine"
        | "VirtualMachineSnapshot"
        | "VirtualMachineClone"
        | "VirtualMachineRestore" => crate::virtualmachines::columns(kind),
        "PodDisruptionBudget" => vec![
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        "HorizontalPodAutoscaler" => vec![
            ("Name", "string", 0),
            ("Reference", "string", 0),
            ("Targets", "string", 0),
            ("MinPods", "string", 0),
            ("MaxPods", "integer", 0),
            ("Replicas", "integer", 0),
            ("Age", "string", 0),
        ],
        "Job" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "CronJob" => vec![
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// `cpu: 12%/50%`, as kubectl shows an autoscaler's metrics (`<unknown>` before the first
/// reading).
fn hpa_cells(v: &Value, name: Value, created: String) -> Vec<Value> {
    let spec = &v["spec"];
    let current = v["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let targets: Vec<String> = spec["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let src = if m["type"] == "ContainerResource" {
                "containerResource"
            } else {
                "resource"
            };
            let res = m[src]["name"].as_str().unwrap_or("?");
            let t = &m[src]["target"];
            let cur = current
                .iter()
                .find(|c| c[src]["name"] == res)
                .map(|c| &c[src]["current"]);
            if t["type"] == "Utilization" {
                let now = cur
                    .and_then(|c| c["averageUtilization"].as_i64())
                    .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                format!(
                    "{res}: {now}/{}%",
                    t["averageUtilization"].as_i64().unwrap_or(0)
                )
            } else {
                let now = cur
                    .and_then(|c| c["averageValue"].as_str())
                    .unwrap_or("<unknown>")
                    .to_string();
                format!("{res}: {now}/{}", s(&t["averageValue"]))
            }
        })
        .collect();
    let r = &spec["scaleTargetRef"];
    vec![
        name,
        json!(format!("{}/{}", s(&r["kind"]), s(&r["name"]))),
        json!(if targets.is_empty() {
            "<none>".into()
        } else {
            targets.join(", ")
        }),
        json!(spec["minReplicas"].as_i64().unwrap_or(1).to_string()),
        json!(spec["maxReplicas"].as_i64().unwrap_or(0)),
        json!(v["status"]["currentReplicas"].as_i64().unwrap_or(0)),
        json!(created),
    ]
}

fn job_cells(v: &Value, name: Value, created: String) -> Vec<Value> {
    let st = &v["status"];
    let status = ["Complete", "Failed", "Suspended"]
        .into_iter()
        .find(|c| has_condition(v, c))
        .unwrap_or("Running");
    let succeeded = st["succeeded"].as_i64().unwrap_or(0);
    let parallelism = v["spec"]["parallelism"].as_i64().unwrap_or(1);
    let completions = match v["spec"]["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        None => format!("{succeeded}/1"),
    };
    let start = st["startTime"].as_str().and_then(parse_rfc3339);
    let end = st["completionTime"]
        .as_str()
        .and_then(parse_rfc3339)
        .unwrap_or_else(now);
    let duration = start.map(|s| human_duration(end - s)).unwrap_or_default();
    let mut row = vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        json!(created),
    ];
    row.extend(template_cells(v));
    row
}

fn cron_job_cells(v: &Value, name: Value, created: String) -> Vec<Value> {
    let spec = &v["spec"];
    let last = match v["status"]["lastScheduleTime"].as_str() {
        Some(t) => age(&json!(t)),
        None => "<none>".into(),
    };
    let cs = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let join = |f: &str| cs.iter().map(|c| s(&c[f])).collect::<Vec<_>>().join(",");
    let selector = crate::workloads::selector_string(&spec["jobTemplate"]["spec"]["selector"]);
    vec![
        name,
        json!(s(&spec["schedule"])),
        json!(spec["timeZone"].as_str().unwrap_or("<none>")),
        // Kubernetes' printer writes the flag as a word.
        json!(if spec["suspend"] == json!(true) {
            "True"
        } else {
            "False"
        }),
        json!(v["status"]["active"].as_array().map_or(0, Vec::len)),
        json!(last),
        json!(created),
        json!(join("name")),
        json!(join("image")),
        json!(if selector.is_empty() {
            "<none>".into()
        } else {
            selector
        }),
    ]
}

/// Up to three items, then how many more, as kubectl prints endpoints; `<none>` for none.
fn first_three(items: &[String]) -> String {
    match items.len() {
        0 => "<none>".into(),
        n if n <= 3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

fn service_cells(v: &Value, name: Value, created: String) -> Vec<Value> {
    let spec = &v["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let external = match ty {
        "ExternalName" => s(&spec["externalName"]),
        "LoadBalancer" => {
            let ips: Vec<String> = v["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| s(&i["ip"]))
                .collect();
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ => "<none>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["nodePort"].as_i64() {
            Some(n) => format!("{}:{n}/{}", p["port"], s(&p["protocol"])),
            None => format!("{}/{}", p["port"], s(&p["protocol"])),
        })
        .collect();
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
        .unwrap_or_default();
    vec![
        name,
        json!(ty),
        json!(or_none(s(&spec["clusterIP"]))),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        }),
        json!(created),
        json!(if selector.is_empty() {
            "<none>".into()
        } else {
            selector.join(",")
        }),
    ]
}

/// The containers and images of a workload's template, and its selector, as `-o wide` shows.
fn template_cells(v: &Value) -> [Value; 3] {
    let cs = v["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let join = |f: &str| cs.iter().map(|c| s(&c[f])).collect::<Vec<_>>().join(",");
    [
        json!(join("name")),
        json!(join("image")),
        json!(crate::workloads::selector_string(&v["spec"]["selector"])),
    ]
}

/// Kubernetes' short human duration (`5s`, `2m3s`, `3h`, `12d`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", h / 24 / 365, (h / 24) % 365)
    } else {
        format!("{}y", h / 24 / 365)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn age(ts: &Value) -> String {
    match ts.as_str().and_then(parse_rfc3339) {
        Some(t) => human_duration(now() - t),
        None => "<unknown>".into(),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

/// A pod's STATUS column, as kubectl computes it.
pub fn pod_status(p: &Value) -> String {
    let st = &p["status"];
    let mut reason = st["reason"]
        .as_str()
        .or(st["phase"].as_str())
        .unwrap_or("")
        .to_string();
    let inits = st["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n_init = p["spec"]["initContainers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let term = &c["state"]["terminated"];
        let wait = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        initializing = true;
        reason = if term.is_object() {
            match term["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match term["signal"].as_i64().filter(|s| *s != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
                },
            }
        } else if wait["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty() && r != "PodInitializing")
        {
            format!("Init:{}", s(&wait["reason"]))
        } else {
            format!("Init:{i}/{n_init}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        let cs = st["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in cs.iter().rev() {
            let (wait, term) = (&c["state"]["waiting"], &c["state"]["terminated"]);
            if wait["reason"].as_str().is_some_and(|r| !r.is_empty()) {
                reason = s(&wait["reason"]);
            } else if term.is_object() {
                reason = match term["reason"].as_str().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None => match term["signal"].as_i64().filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
                    },
                };
            } else if c["state"]["running"].is_object() && c["ready"] == json!(true) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if !p["metadata"]["deletionTimestamp"].is_null() {
        reason = if st["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let cs = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = p["spec"]["containers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let ready = cs.iter().filter(|c| c["ready"] == json!(true)).count();
    let restarts: i64 = cs
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let last = cs
        .iter()
        .filter_map(|c| {
            c["lastState"]["terminated"]["finishedAt"]
                .as_str()
                .and_then(parse_rfc3339)
        })
        .max();
    let restarts = match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now() - t)),
        _ => restarts.to_string(),
    };
    let gates = p["spec"]["readinessGates"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    vec![
        json!(s(&p["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(pod_status(p)),
        json!(restarts),
        json!(age(&p["metadata"]["creationTimestamp"])),
        json!(or_none(s(&p["status"]["podIP"]))),
        json!(or_none(s(&p["spec"]["nodeName"]))),
        json!(or_none(s(&p["status"]["nominatedNodeName"]))),
        json!(if gates == 0 {
            "<none>".to_string()
        } else {
            format!("0/{gates}")
        }),
    ]
}

fn count(v: &Value) -> usize {
    v.as_object()
        .map(|m| m.len())
        .or(v.as_array().map(Vec::len))
        .unwrap_or(0)
}

fn cells(r: &Resource, v: &Value) -> Vec<Value> {
    let name = json!(s(&v["metadata"]["name"]));
    let created = age(&v["metadata"]["creationTimestamp"]);
    match r.kind {
        "Pod" => pod_pods(v),
        "Namespace" => vec![name, json!(s(&v["status"]["phase"])), json!(created)],
        "Node" => {
            let ready = v["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"] == "True");
            let mut status = match ready {
                Some(true) => "Ready".to_string(),
                Some(false) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if v["spec"]["unschedulable"] == json!(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = v["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                v["status"]["addresses"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["type"] == t))
                    .map(|x| s(&x["address"]))
                    .unwrap_or_default()
            };
            let info = &v["status"]["nodeInfo"];
            vec![
                name,
                json!(status),
                json!(or_none(roles.join(","))),
                json!(created),
                json!(s(&info["kubeletVersion"])),
                json!(or_none(addr("InternalIP"))),
                json!(or_none(addr("ExternalIP"))),
                json!(s(&info["osImage"])),
                json!(s(&info["kernelVersion"])),
                json!(s(&info["containerRuntimeVersion"])),
            ]
        }
        "ConfigMap" => vec![
            name,
            json!(count(&v["data"]) + count(&v["binaryData"])),
            json!(created),
        ],
        "Secret" => vec![
            name,
            json!(s(&v["type"])),
            json!(count(&v["data"])),
            json!(created),
        ],
        "ServiceAccount" => vec![name, json!(count(&v["secrets"])), json!(created)],
        "Event" => {
            let last = if v["lastTimestamp"].is_string() {
                &v["lastTimestamp"]
            } else {
                &v["eventTime"]
            };
            let io = &v["involvedObject"];
            vec![
                json!(age(last)),
                json!(s(&v["type"])),
                json!(s(&v["reason"])),
                json!(format!(
                    "{}/{}",
                    s(&io["kind"]).to_lowercase(),
                    s(&io["name"])
                )),
                json!(s(&v["message"])),
            ]
        }
        "Lease" => vec![name, json!(s(&v["spec"]["holderIdentity"])), json!(created)],
        "ControllerRevision" => {
            let owner = v["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|a| a.iter().find(|o| o["controller"] == json!(true)))
                .map(|o| {
                    let group = s(&o["apiVersion"]);
                    let group = group.split_once('/').map_or("", |(g, _)| g);
                    let kind = s(&o["kind"]).to_lowercase();
                    let what = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{what}/{}", s(&o["name"]))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(owner),
                json!(v["revision"].as_i64().unwrap_or(0)),
                json!(created),
            ]
        }
        "RuntimeClass" => vec![name, json!(s(&v["handler"])), json!(created)],
        "StorageClass" => {
            let mut n = s(&v["metadata"]["name"]);
            if v["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
            {
                n.push_str(" (default)");
            }
            vec![
                json!(n),
                json!(s(&v["provisioner"])),
                json!(v["reclaimPolicy"].as_str().unwrap_or("Delete")),
                json!(v["volumeBindingMode"].as_str().unwrap_or("Immediate")),
                json!(v["allowVolumeExpansion"]
                    .as_bool()
                    .unwrap_or(false)
                    .to_string()),
                json!(created),
            ]
        }
        "PersistentVolumeClaim" => vec![
            name,
            json!(s(&v["status"]["phase"])),
            json!(s(&v["spec"]["volumeName"])),
            json!(s(&v["status"]["capacity"]["storage"])),
            json!(access_modes(&v["status"]["accessModes"])),
            json!(or_none(s(&v["spec"]["storageClassName"]))),
            json!(created),
        ],
        "PersistentVolume" => {
            let claim = &v["spec"]["claimRef"];
            let claim = if claim.is_object() {
                format!("{}/{}", s(&claim["namespace"]), s(&claim["name"]))
            } else {
                String::new()
            };
            vec![
                name,
                json!(s(&v["spec"]["capacity"]["storage"])),
                json!(access_modes(&v["spec"]["accessModes"])),
                json!(v["spec"]["persistentVolumeReclaimPolicy"]
                    .as_str()
                    .unwrap_or("Retain")),
                json!(s(&v["status"]["phase"])),
                json!(claim),
                json!(s(&v["spec"]["storageClassName"])),
                json!(created),
            ]
        }
        "Service" => service_cells(v, name, created),
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in v["subsets"].as_array().into_iter().flatten() {
                for a in sub["addresses"].as_array().into_iter().flatten() {
                    for p in sub["ports"].as_array().into_iter().flatten() {
                        eps.push(format!("{}:{}", s(&a["ip"]), p["port"]));
                    }
                }
            }
            vec![name, json!(first_three(&eps)), json!(created)]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = v["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["port"].to_string())
                .collect();
            let eps: Vec<String> = v["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| s(&a))
                .collect();
            vec![
                name,
                json!(s(&v["addressType"])),
                json!(if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                }),
                json!(first_three(&eps)),
                json!(created),
            ]
        }
        "Deployment" => {
            let st = &v["status"];
            let n = |f: &str| st[f].as_i64().unwrap_or(0);
            let mut row = vec![
                name,
                json!(format!(
                    "{}/{}",
                    n("readyReplicas"),
                    v["spec"]["replicas"].as_i64().unwrap_or(0)
                )),
                json!(n("updatedReplicas")),
                json!(n("availableReplicas")),
                json!(created),
            ];
            row.extend(template_cells(v));
            row
        }
        "ReplicaSet" => {
            let st = &v["status"];
            let mut row = vec![
                name,
                json!(v["spec"]["replicas"].as_i64().unwrap_or(0)),
                json!(st["replicas"].as_i64().unwrap_or(0)),
                json!(st["readyReplicas"].as_i64().unwrap_or(0)),
                json!(created),
            ];
            row.extend(template_cells(v));
            row
        }
        "StatefulSet" => {
            let [containers, images, _] = template_cells(v);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    v["status"]["readyReplicas"].as_i64().unwrap_or(0),
                    v["spec"]["replicas"].as_i64().unwrap_or(0)
                )),
                json!(created),
                containers,
                images,
            ]
        }
        "DaemonSet" => {
            let st = &v["status"];
            let n = |f: &str| json!(st[f].as_i64().unwrap_or(0));
            let sel: Vec<String> = v["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            let mut row = vec![
                name,
                n("desiredNumberScheduled"),
                n("currentNumberScheduled"),
                n("numberReady"),
                n("updatedNumberScheduled"),
                n("numberAvailable"),
                json!(if sel.is_empty() {
                    "<none>".to_string()
                } else {
                    sel.join(",")
                }),
                json!(created),
            ];
            row.extend(template_cells(v));
            row
        }
        "HorizontalPodAutoscaler" => hpa_cells(v, name, created),
        "VirtualMachine"
        | "VirtualMachineSnapshot"
        | "VirtualMachineClone"
        | "VirtualMachineRestore" => crate::virtualmachines::cells(r.kind, v, name, json!(created)),
        "PodDisruptionBudget" => {
            let spec = &v["spec"];
            let show = |x: &Value| match x {
                Value::Null => "N/A".to_string(),
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            vec![
                name,
                json!(show(&spec["minAvailable"])),
                json!(show(&spec["maxUnavailable"])),
                json!(v["status"]["disruptionsAllowed"].as_i64().unwrap_or(0)),
                json!(created),
            ]
        }
        "Job" => job_cells(v, name, created),
        "CronJob" => cron_job_cells(v, name, created),
        _ => vec![name, json!(created)],
    }
}

fn pod_pods(v: &Value) -> Vec<Value> {
    pod_cells(v)
}

fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| match m.as_str()? {
                    "ReadWriteOnce" => Some("RWO"),
                    "ReadOnlyMany" => Some("ROX"),
                    "ReadWriteMany" => Some("RWX"),
                    "ReadWriteOncePod" => Some("RWOP"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    modes.join(",")
}

fn row(r: &Resource, v: &Value, include: &str) -> Value {
    let object = match include {
        "None" => Value::Null,
        "Object" => v.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": v["metadata"]})
        }
    };
    json!({"cells": cells(r, v), "object": object})
}

fn definitions(r: &Resource) -> Value {
    let defs: Vec<Value> = columns(r.kind)
        .into_iter()
        .map(|(name, ty, priority)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect();
    json!(defs)
}

/// A list as a Table.
pub fn list_table(r: &Resource, page: &ListPage, include: &str) -> Value {
    let rows: Vec<Value> = page.items.iter().map(|v| row(r, v, include)).collect();
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": definitions(r), "rows": rows})
}

/// One object as a Table of one row.
pub fn object_table(r: &Resource, v: &Value, include: &str) -> Value {
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": v["metadata"]["resourceVersion"]},
        "columnDefinitions": definitions(r),
        "rows": [row(r, v, include)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600 * 3 + 60), "3h1m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86_400 * 3), "3d");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn pod_statuses() {
        let p = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&p), "CrashLoopBackOff");
        let p = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]}});
        assert_eq!(pod_status(&p), "Init:0/1");
        let p = json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&p), "Terminating");
        let p = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&p), "Completed");
    }
}
