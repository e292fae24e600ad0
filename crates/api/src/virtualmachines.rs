//! `corral.dev/v1` VirtualMachine: a VM declared as an object, kept running (or stopped) by
//! its `runStrategy` on the node that corral-control's placement picks, by that node's agent
//! through the engine — the same VMs `corral vm ls` shows.
//!
//! Here are the kind's typed form (what strict field validation compares with), its
//! defaults, what a write must satisfy, its columns for `kubectl get vm`, and its schema for
//! `/openapi/v3` (so `kubectl explain vm` reads it, as for a CustomResourceDefinition).
//!
//! ```yaml
//! apiVersion: corral.dev/v1
//! kind: VirtualMachine
//! metadata: {name: web, labels: {app: web}}
//! spec:
//!   runStrategy: Always        # RerunOnFailure, Manual, Halted
//!   image: nginx:alpine        # or bootDisk: /path/on/the/node.qcow2
//!   cpus: 1
//!   memory: 512Mi
//! ```
//!
//! A Service selects VirtualMachines by their labels, as it selects pods (corral-control's
//! endpoints controller).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::quantity;
use crate::resources::Resource;
use crate::status::ApiError;
use crate::validate::{roundtrip, set_default};

/// The run strategies, as KubeVirt names them.
pub const RUN_STRATEGIES: &[&str] = &["Always", "RerunOnFailure", "Manual", "Halted"];
/// Memory when the spec gives none.
pub const DEFAULT_MEMORY: &str = "512Mi";
/// An image VM's writable disk when the spec gives none.
pub const DEFAULT_DISK: &str = "2Gi";
/// The least memory a VM may have.
const MIN_MEMORY: u64 = 64 << 20;

/// A VirtualMachine, typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    /// `corral.dev/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `VirtualMachine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the user asks for.
    #[serde(default)]
    pub spec: VirtualMachineSpec,
    /// What the node agent reports (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// What a VirtualMachine asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// When the VM runs: `Always` (started, and started again whenever it stops),
    /// `RerunOnFailure` (started again only when it fails), `Manual` (made, then started and
    /// stopped by hand with `corral vm start|stop`), `Halted` (stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// An OCI image of the node's image store, booted with corral's guest kernel; its
    /// process runs as the guest's main process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A bootable raw or qcow2 disk on the node (absolute path), copied into the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_disk: Option<String>,
    /// Virtual CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory (a quantity: `512Mi`, `2Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// An image VM's writable disk (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<Quantity>,
    /// An image VM's command, in place of the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// More environment for an image VM's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<VmEnv>>,
    /// corral networks, in NIC order (default: the node's pod network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<VmNetwork>>,
    /// cloud-init for a disk VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
    /// A node to run on, in place of the one placement would pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// One environment variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmEnv {
    /// Its name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// One NIC.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmNetwork {
    /// The corral network's name.
    pub name: String,
    /// An IPv4 address on it, kept for the VM's life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// cloud-init's NoCloud seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInit {
    /// The user-data document (`#cloud-config ...`).
    #[serde(default)]
    pub user_data: String,
}

impl VirtualMachineSpec {
    /// The run strategy (defaulted).
    pub fn run_strategy(&self) -> &str {
        self.run_strategy.as_deref().unwrap_or("Always")
    }

    /// Memory in MiB (defaulted).
    pub fn memory_mib(&self) -> u64 {
        let q = self
            .memory
            .as_ref()
            .map_or(DEFAULT_MEMORY, |q| q.0.as_str());
        quantity::whole(q).unwrap_or(MIN_MEMORY).div_ceil(1 << 20)
    }

    /// The writable disk in bytes (defaulted).
    pub fn disk_bytes(&self) -> u64 {
        let q = self
            .disk_size
            .as_ref()
            .map_or(DEFAULT_DISK, |q| q.0.as_str());
        quantity::whole(q).unwrap_or(2 << 30)
    }

    /// A digest of what is fixed when the VM is made (all but the run strategy and the node):
    /// when it changes, the change applies once the VM is made again.
    pub fn fingerprint(&self) -> String {
        let mut s = self.clone();
        s.run_strategy = None;
        s.node_name = None;
        let text = serde_json::to_string(&s).unwrap_or_default();
        // FNV-1a: a change detector, not a security boundary.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// The engine's name for a VirtualMachine's VM: `NAME.NAMESPACE` (what `corral vm ls` shows).
pub fn engine_name(ns: &str, name: &str) -> String {
    format!("{name}.{ns}")
}

/// A VirtualMachine in the object's namespace, as a snapshot, clone or restore names it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// A VirtualMachineSnapshot's spec. `memory` stays a JSON value so that a wrong type gets
/// the check's 422 that names it, not a decoding error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SnapshotSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<VmRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<Value>,
}

/// A VirtualMachineClone's spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CloneSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<VmRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<VmRef>,
}

/// A VirtualMachineRestore's spec (KubeVirt's fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoreSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<VmRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    virtual_machine_snapshot_name: Option<String>,
}

/// A snapshot, clone or restore object, typed by its spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CopyObject<S> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
}

/// The typed round trip of a VirtualMachine, snapshot or clone body (what strict field
/// validation compares); another kind's body as it is.
pub(crate) fn typed(kind: &str, v: &Value) -> Result<Value, String> {
    match kind {
        "VirtualMachine" => roundtrip::<VirtualMachine>(v),
        "VirtualMachineSnapshot" => roundtrip::<CopyObject<SnapshotSpec>>(v),
        "VirtualMachineClone" => roundtrip::<CopyObject<CloneSpec>>(v),
        "VirtualMachineRestore" => roundtrip::<CopyObject<RestoreSpec>>(v),
        _ => Ok(v.clone()),
    }
}

/// Defaults: `runStrategy: Always`, one CPU, 512Mi, and a 2Gi disk for an image VM.
pub(crate) fn defaults(obj: &mut Value) {
    let image = obj["spec"]["image"].is_string();
    let Some(spec) = obj["spec"].as_object_mut() else {
        return;
    };
    set_default(spec, "runStrategy", json!("Always"));
    set_default(spec, "cpus", json!(1));
    set_default(spec, "memory", json!(DEFAULT_MEMORY));
    if image {
        set_default(spec, "diskSize", json!(DEFAULT_DISK));
    }
}

/// The rules of a VirtualMachineSnapshot (`spec.source.name`: the VM, in the same
/// namespace; `spec.memory`: with the running machine's state) and of a VirtualMachineClone
/// (`spec.source.name`, `spec.target.name`: the VirtualMachine to make) and of a
/// VirtualMachineRestore (`spec.target.name`: the VirtualMachine; `spec.virtualMachineSnapshotName`).
fn check_copy(r: &Resource, v: &Value) -> Result<(), ApiError> {
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let spec = &v["spec"];
    let mut causes: Vec<(String, String)> = Vec::new();
    let mut kinds_ok = |f: &str, o: &Value| {
        match o["apiGroup"].as_str() {
            None | Some("corral.dev") => {}
            Some(g) => causes.push((
                format!("spec.{f}.apiGroup"),
                format!("Unsupported value: \"{g}\": supported values: \"corral.dev\""),
            )),
        }
        match o["kind"].as_str() {
            None | Some("VirtualMachine") => {}
            Some(k) => causes.push((
                format!("spec.{f}.kind"),
                format!("Unsupported value: \"{k}\": supported values: \"VirtualMachine\""),
            )),
        }
        match o["name"].as_str() {
            Some(n) if !n.is_empty() => {}
            _ => causes.push((format!("spec.{f}.name"), "Required value".into())),
        }
    };
    let refs: &[&str] = match r.kind {
        "VirtualMachineRestore" => &["target"],
        "VirtualMachineClone" => &["source", "target"],
        _ => &["source"],
    };
    for f in refs {
        kinds_ok(f, &spec[*f]);
    }
    if r.kind == "VirtualMachineRestore" {
        match spec["virtualMachineSnapshotName"].as_str() {
            Some(n) if crate::validate::is_dns_subdomain(n) => {}
            Some(n) => causes.push((
                "spec.virtualMachineSnapshotName".into(),
                format!("Invalid value: \"{n}\": the name of a VirtualMachineSnapshot"),
            )),
            None => causes.push((
                "spec.virtualMachineSnapshotName".into(),
                "Required value".into(),
            )),
        }
    }
    if r.kind == "VirtualMachineClone" {
        if let Some(t) = spec["target"]["name"].as_str().filter(|t| !t.is_empty()) {
            let ns = v["metadata"]["namespace"].as_str().unwrap_or("default");
            if !crate::validate::is_dns_subdomain(t) || engine_name(ns, t).len() > 63 {
                causes.push((
                    "spec.target.name".into(),
                    format!("Invalid value: \"{t}\": a lowercase DNS name, at most 62 characters with the namespace"),
                ));
            }
            if spec["source"]["name"].as_str() == Some(t) {
                causes.push((
                    "spec.target.name".into(),
                    "Invalid value: the target must differ from the source".into(),
                ));
            }
        }
    } else if r.kind == "VirtualMachineSnapshot"
        && !spec["memory"].is_null()
        && !spec["memory"].is_boolean()
    {
        causes.push((
            "spec.memory".into(),
            "Invalid value: must be true or false".into(),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

/// A VirtualMachine's, snapshot's or clone's own rules.
pub(crate) fn check(r: &Resource, v: &Value) -> Result<(), ApiError> {
    if matches!(
        r.kind,
        "VirtualMachineSnapshot" | "VirtualMachineClone" | "VirtualMachineRestore"
    ) {
        return check_copy(r, v);
    }
    if r.kind != "VirtualMachine" {
        return Ok(());
    }
    let name = v["metadata"]["name"].as_str().unwrap_or("");
    let ns = v["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut causes: Vec<(String, String)> = Vec::new();
    let mut cause = |f: &str, m: String| causes.push((f.to_owned(), m));
    if engine_name(ns, name).len() > 63 {
        cause(
            "metadata.name",
            format!("Invalid value: \"{name}\": the name and the namespace together must be at most 62 characters (the VM's name is NAME.NAMESPACE)"),
        );
    }
    let spec: VirtualMachineSpec = match serde_json::from_value(v["spec"].clone()) {
        Ok(s) => s,
        Err(e) => {
            return Err(ApiError::invalid(
                r.kind,
                name,
                vec![("spec".into(), format!("Invalid value: {e}"))],
            ))
        }
    };
    match (&spec.image, &spec.boot_disk) {
        (None, None) => cause(
            "spec.image",
            "Required value: one of spec.image (an OCI image) and spec.bootDisk (a disk on the node) must be set".into(),
        ),
        (Some(_), Some(_)) => cause(
            "spec.bootDisk",
            "Invalid value: spec.image and spec.bootDisk cannot both be set".into(),
        ),
        (Some(i), None) if i.trim().is_empty() => {
            cause("spec.image", "Required value: an image name".into())
        }
        (None, Some(d)) if !d.starts_with('/') => cause(
            "spec.bootDisk",
            format!("Invalid value: \"{d}\": must be an absolute path on the node"),
        ),
        _ => {}
    }
    if !RUN_STRATEGIES.contains(&spec.run_strategy()) {
        cause(
            "spec.runStrategy",
            format!(
                "Unsupported value: \"{}\": supported values: \"Always\", \"RerunOnFailure\", \"Manual\", \"Halted\"",
                spec.run_strategy()
            ),
        );
    }
    if let Some(c) = spec.cpus {
        if c == 0 || c > 255 {
            cause(
                "spec.cpus",
                format!("Invalid value: {c}: must be between 1 and 255"),
            );
        }
    }
    if let Some(m) = &spec.memory {
        match quantity::whole(&m.0) {
            Some(b) if b >= MIN_MEMORY => {}
            _ => cause(
                "spec.memory",
                format!(
                    "Invalid value: \"{}\": must be a quantity of at least 64Mi",
                    m.0
                ),
            ),
        }
    }
    if let Some(d) = &spec.disk_size {
        match quantity::whole(&d.0) {
            Some(b) if b >= 64 << 20 => {}
            _ => cause(
                "spec.diskSize",
                format!(
                    "Invalid value: \"{}\": must be a quantity of at least 64Mi",
                    d.0
                ),
            ),
        }
    }
    if spec.boot_disk.is_some() && (spec.command.is_some() || spec.env.is_some()) {
        cause(
            "spec.command",
            "Invalid value: command and env are for image VMs; a disk VM runs what its disk boots (use cloudInit)".into(),
        );
    }
    if spec.image.is_some() && spec.cloud_init.is_some() {
        cause(
            "spec.cloudInit",
            "Invalid value: cloudInit is for disk VMs; an image VM runs the image's process (use command and env)".into(),
        );
    }
    for (i, e) in spec.env.iter().flatten().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            cause(
                &format!("spec.env[{i}].name"),
                format!("Invalid value: \"{}\": a variable name without '='", e.name),
            );
        }
    }
    let mut seen = Vec::new();
    for (i, n) in spec.networks.iter().flatten().enumerate() {
        if n.name.is_empty() {
            cause(&format!("spec.networks[{i}].name"), "Required value".into());
        } else if seen.contains(&&n.name) {
            cause(
                &format!("spec.networks[{i}].name"),
                format!("Duplicate value: \"{}\"", n.name),
            );
        }
        seen.push(&n.name);
        if let Some(ip) = &n.ip {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                cause(
                    &format!("spec.networks[{i}].ip"),
                    format!("Invalid value: \"{ip}\": must be an IPv4 address"),
                );
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, name, causes))
    }
}

/// `kubectl get`'s columns, KubeVirt's: for VMs (with the address and node under `-o
/// wide`), snapshots and clones.
pub(crate) fn columns(kind: &str) -> Vec<(&'static str, &'static str, u8)> {
    match kind {
        "VirtualMachineSnapshot" => vec![
            ("Name", "string", 0),
            ("SourceKind", "string", 0),
            ("SourceName", "string", 0),
            ("Phase", "string", 0),
            ("ReadyToUse", "boolean", 0),
            ("CreationTime", "string", 0),
            ("Error", "string", 0),
            ("Age", "string", 0),
        ],
        "VirtualMachineClone" => vec![
            ("Name", "string", 0),
            ("Phase", "string", 0),
            ("SourceVirtualMachine", "string", 0),
            ("TargetVirtualMachine", "string", 0),
            ("Age", "string", 0),
        ],
        "VirtualMachineRestore" => vec![
            ("Name", "string", 0),
            ("TargetKind", "string", 0),
            ("TargetName", "string", 0),
            ("Complete", "boolean", 0),
            ("RestoreTime", "string", 0),
            ("Error", "string", 0),
            ("Age", "string", 0),
        ],
        _ => vec![
            ("Name", "string", 0),
            ("Age", "string", 0),
            ("Status", "string", 0),
            ("Ready", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
    }
}

/// One row of those columns.
pub(crate) fn cells(kind: &str, v: &Value, name: Value, age: Value) -> Vec<Value> {
    let st = &v["status"];
    let s = |x: &Value| json!(x.as_str().unwrap_or("<none>"));
    match kind {
        "VirtualMachineSnapshot" => {
            return vec![
                name,
                json!("VirtualMachine"),
                s(&v["spec"]["source"]["name"]),
                json!(st["phase"].as_str().unwrap_or("InProgress")),
                json!(st["readyToUse"].as_bool().unwrap_or(false)),
                s(&st["creationTime"]),
                s(&st["error"]["message"]),
                age,
            ]
        }
        "VirtualMachineClone" => {
            return vec![
                name,
                json!(st["phase"].as_str().unwrap_or("Pending")),
                s(&v["spec"]["source"]["name"]),
                s(&v["spec"]["target"]["name"]),
                age,
            ]
        }
        "VirtualMachineRestore" => {
            let error = st["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Failure"))
                .map_or(json!("<none>"), |c| s(&c["message"]));
            return vec![
                name,
                json!("VirtualMachine"),
                s(&v["spec"]["target"]["name"]),
                json!(st["complete"].as_bool().unwrap_or(false)),
                s(&st["restoreTime"]),
                error,
                age,
            ];
        }
        _ => {}
    }
    let ready = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let ip = st["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find_map(|i| i["ipAddress"].as_str()))
        .unwrap_or("<none>");
    vec![
        name,
        age,
        json!(st["printableStatus"].as_str().unwrap_or("Provisioning")),
        json!(if ready { "True" } else { "False" }),
        json!(ip),
        json!(st["nodeName"].as_str().unwrap_or("<none>")),
    ]
}

/// The schemas `/openapi/v3/apis/corral.dev/v1` lists, as CustomResourceDefinitions give
/// them: each kind's name and schema.
pub fn schemas() -> Vec<(&'static str, Value)> {
    let s = |d: &str| json!({"type": "string", "description": d});
    let source = json!({"type": "object", "description": "The VirtualMachine, in the same namespace.",
        "properties": {"kind": s("VirtualMachine"), "name": s("Its name.")}, "required": ["name"]});
    let gvk = |k: &str| json!([{"group": "corral.dev", "version": "v1", "kind": k}]);
    let meta = json!({"type": "object", "description": "Standard object metadata."});
    vec![
        ("VirtualMachine", vm_schema()),
        (
            "VirtualMachineSnapshot",
            json!({
                "type": "object",
                "description": "A snapshot of a VirtualMachine's disk (and with memory: true, of the running machine), taken once by the agent of the VM's node: the same snapshot `corral vm snapshot ls NAME.NAMESPACE` lists. Deleting the object deletes the snapshot. Restore with a VirtualMachineRestore or `corral vm snapshot restore`.",
                "x-kubernetes-group-version-kind": gvk("VirtualMachineSnapshot"),
                "properties": {
                    "apiVersion": s("corral.dev/v1"), "kind": s("VirtualMachineSnapshot"), "metadata": meta,
                    "spec": {"type": "object", "description": "What to snapshot.", "properties": {
                        "source": source,
                        "memory": {"type": "boolean", "description": "Also save the running machine (memory, CPUs, devices), so that a restore resumes every process."},
                    }},
                    "status": {"type": "object", "properties": {
                        "phase": s("InProgress, Succeeded or Failed."),
                        "readyToUse": {"type": "boolean", "description": "The snapshot exists."},
                        "creationTime": s("When it was taken."),
                        "snapshotName": s("The engine's snapshot of the VM."),
                        "error": {"type": "object", "properties": {"message": s("Why it failed.")}},
                    }},
                }
            }),
        ),
        (
            "VirtualMachineClone",
            json!({
                "type": "object",
                "description": "Makes a new VirtualMachine (target) from a stopped one (source) in milliseconds: a copy-on-write disk on the source's, with a new identity (MAC, address, hostname, machine-id). Waits while the source runs.",
                "x-kubernetes-group-version-kind": gvk("VirtualMachineClone"),
                "properties": {
                    "apiVersion": s("corral.dev/v1"), "kind": s("VirtualMachineClone"), "metadata": meta,
                    "spec": {"type": "object", "description": "What to clone, and into what.", "properties": {"source": source.clone(), "target": {"type": "object", "description": "The VirtualMachine to make (it must not exist).", "properties": {"kind": s("VirtualMachine"), "name": s("Its name.")}, "required": ["name"]}}},
                    "status": {"type": "object", "properties": {
                        "phase": s("Pending, Succeeded or Failed."),
                        "conditions": {"type": "array", "items": {"type": "object"}},
                    }},
                }
            }),
        ),
        (
            "VirtualMachineRestore",
            json!({
                "type": "object",
                "description": "Puts a VirtualMachineSnapshot back into the VirtualMachine it was taken of, once, by the agent of the VM's node. A disk snapshot needs the VM stopped (runStrategy: Halted; the restore waits); a memory snapshot restored into a running VM resumes the saved machine in place. A stopped VM gets the snapshot's disk and boots from it at its next start.",
                "x-kubernetes-group-version-kind": gvk("VirtualMachineRestore"),
                "properties": {
                    "apiVersion": s("corral.dev/v1"), "kind": s("VirtualMachineRestore"), "metadata": meta,
                    "spec": {"type": "object", "description": "What to restore, and into which VM.", "properties": {
                        "target": {"type": "object", "description": "The VirtualMachine, in the same namespace.", "properties": {"apiGroup": s("corral.dev"), "kind": s("VirtualMachine"), "name": s("Its name.")}, "required": ["name"]},
                        "virtualMachineSnapshotName": s("The VirtualMachineSnapshot to restore, in the same namespace, taken of the target."),
                    }, "required": ["target", "virtualMachineSnapshotName"]},
                    "status": {"type": "object", "properties": {
                        "complete": {"type": "boolean", "description": "The restore is done."},
                        "restoreTime": s("When it was done."),
                        "conditions": {"type": "array", "items": {"type": "object"}, "description": "Progressing, Ready and, when it cannot be done, Failure."},
                    }},
                }
            }),
        ),
    ]
}

fn vm_schema() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "description": "A virtual machine kept running (or stopped) by its runStrategy on one node, through corral's engine: the same VM `corral vm ls` shows as NAME.NAMESPACE.",
        "x-kubernetes-group-version-kind": [{"group": "corral.dev", "version": "v1", "kind": "VirtualMachine"}],
        "properties": {
            "apiVersion": s("corral.dev/v1"),
            "kind": s("VirtualMachine"),
            "metadata": {"type": "object", "description": "Standard object metadata. The labels are what Services select."},
            "spec": {
                "type": "object",
                "description": "What the VM is and when it runs. Everything but runStrategy and nodeName is fixed when the VM is made: a change sets the RestartRequired condition and applies once the object is made again.",
                "properties": {
                    "runStrategy": {"type": "string", "enum": RUN_STRATEGIES, "description": "Always (default): started, and started again whenever it stops. RerunOnFailure: started again only when it fails. Manual: made, then started and stopped with `corral vm start|stop`. Halted: stopped."},
                    "image": s("An OCI image of the node's image store, booted with corral's guest kernel; the image's process runs as the guest's main process. One of image and bootDisk."),
                    "bootDisk": s("A bootable raw or qcow2 disk on the node (absolute path), copied into the VM. One of image and bootDisk."),
                    "cpus": {"type": "integer", "description": "Virtual CPUs (default 1)."},
                    "memory": {"type": "string", "description": "Memory, a quantity (default 512Mi, at least 64Mi)."},
                    "diskSize": {"type": "string", "description": "An image VM's writable disk, a quantity (default 2Gi)."},
                    "command": {"type": "array", "items": {"type": "string"}, "description": "An image VM's command, in place of the image's."},
                    "env": {"type": "array", "description": "More environment for an image VM's process.", "items": {"type": "object", "properties": {"name": s("The variable's name."), "value": s("Its value.")}, "required": ["name"]}},
                    "networks": {"type": "array", "description": "corral networks, in NIC order (default: the node's pod network).", "items": {"type": "object", "properties": {"name": s("The network."), "ip": s("An IPv4 address on it, kept for the VM's life.")}, "required": ["name"]}},
                    "cloudInit": {"type": "object", "description": "cloud-init's NoCloud seed for a disk VM.", "properties": {"userData": s("The user-data document.")}},
                    "nodeName": s("A node to run on, in place of the one placement picks."),
                }
            },
            "status": {
                "type": "object",
                "description": "What the node agent reports.",
                "properties": {
                    "printableStatus": s("Provisioning, ErrorUnschedulable, Starting, Running, Stopping, Stopped, CrashLoopBackOff or Failed."),
                    "nodeName": s("The node the VM runs on."),
                    "vmName": s("The engine's VM (corral vm ls)."),
                    "interfaces": {"type": "array", "items": {"type": "object", "properties": {"network": s("The network."), "ipAddress": s("The address."), "mac": s("The MAC.")}}},
                    "restartCount": {"type": "integer", "description": "Times the VM was started again by its runStrategy."},
                    "conditions": {"type": "array", "items": {"type": "object"}, "description": "Ready, AgentConnected, PodScheduled and RestartRequired."},
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(spec: Value) -> Value {
        json!({"apiVersion": "corral.dev/v1", "kind": "VirtualMachine",
               "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn res() -> &'static Resource {
        crate::resources::find("corral.dev", "v1", "virtualmachines").expect("served")
    }

    #[test]
    fn defaults_and_rules() {
        let mut v = vm(json!({"image": "busybox"}));
        defaults(&mut v);
        assert_eq!(v["spec"]["runStrategy"], "Always");
        assert_eq!(v["spec"]["memory"], "512Mi");
        assert_eq!(v["spec"]["diskSize"], "2Gi");
        check(res(), &v).unwrap();
        let spec: VirtualMachineSpec = serde_json::from_value(v["spec"].clone()).unwrap();
        assert_eq!(spec.memory_mib(), 512);
        assert_eq!(spec.disk_bytes(), 2 << 30);

        for (bad, field) in [
            (json!({}), "spec.image"),
            (json!({"image": "a", "bootDisk": "/d"}), "spec.bootDisk"),
            (json!({"bootDisk": "disk.qcow2"}), "spec.bootDisk"),
            (
                json!({"image": "a", "runStrategy": "Sometimes"}),
                "spec.runStrategy",
            ),
            (json!({"image": "a", "memory": "1Mi"}), "spec.memory"),
            (json!({"image": "a", "cpus": 0}), "spec.cpus"),
            (
                json!({"image": "a", "networks": [{"name": "n"}, {"name": "n"}]}),
                "spec.networks[1].name",
            ),
            (
                json!({"image": "a", "networks": [{"name": "n", "ip": "10.0.0.300"}]}),
                "spec.networks[0].ip",
            ),
            (json!({"bootDisk": "/d", "command": ["x"]}), "spec.command"),
        ] {
            let e = check(res(), &vm(bad.clone())).expect_err(&bad.to_string());
            assert!(
                e.message.contains(field),
                "{bad}: {} should name {field}",
                e.message
            );
        }
    }

    #[test]
    fn unknown_fields_are_dropped_by_the_typed_form() {
        let v = vm(json!({"image": "a", "cpu": 2}));
        let t = typed("VirtualMachine", &v).unwrap();
        assert!(t["spec"].get("cpu").is_none());
        assert_eq!(t["spec"]["image"], "a");
        // Snapshots and clones too: their own fields stay, others go.
        let snap = json!({"apiVersion": "corral.dev/v1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": "s"}, "spec": {"source": {"name": "web", "nmae": "x"},
            "memory": true, "target": {"name": "no"}}});
        let t = typed("VirtualMachineSnapshot", &snap).unwrap();
        assert_eq!(
            t["spec"],
            json!({"source": {"name": "web"}, "memory": true})
        );
        let clone = json!({"kind": "VirtualMachineClone", "metadata": {"name": "c"},
            "spec": {"source": {"kind": "VirtualMachine", "name": "web"},
            "target": {"name": "web2"}, "memory": true}, "status": {"phase": "Pending"}});
        let t = typed("VirtualMachineClone", &clone).unwrap();
        assert_eq!(
            t["spec"],
            json!({"source": {"kind": "VirtualMachine", "name": "web"}, "target": {"name": "web2"}})
        );
        assert_eq!(t["status"]["phase"], "Pending");
    }

    #[test]
    fn a_restore_names_its_vm_and_snapshot() {
        let r =
            crate::resources::find("corral.dev", "v1", "virtualmachinerestores").expect("served");
        let ok = json!({"kind": "VirtualMachineRestore", "metadata": {"name": "r"},
            "spec": {"target": {"apiGroup": "corral.dev", "kind": "VirtualMachine", "name": "web"},
                     "virtualMachineSnapshotName": "snap1"}});
        check(r, &ok).unwrap();
        assert_eq!(
            typed("VirtualMachineRestore", &ok).unwrap()["spec"],
            ok["spec"]
        );
        for (spec, field) in [
            (
                json!({"target": {"name": "web"}}),
                "spec.virtualMachineSnapshotName",
            ),
            (
                json!({"virtualMachineSnapshotName": "s"}),
                "spec.target.name",
            ),
            (
                json!({"target": {"name": "web", "apiGroup": "kubevirt.io"}, "virtualMachineSnapshotName": "s"}),
                "spec.target.apiGroup",
            ),
            (
                json!({"target": {"name": "web"}, "virtualMachineSnapshotName": "Not_A_Name"}),
                "spec.virtualMachineSnapshotName",
            ),
        ] {
            let v =
                json!({"kind": "VirtualMachineRestore", "metadata": {"name": "r"}, "spec": spec});
            let e = check(r, &v).expect_err(field);
            assert!(e.message.contains(field), "{}", e.message);
        }
    }

    #[test]
    fn the_fingerprint_ignores_the_run_strategy() {
        let a: VirtualMachineSpec =
            serde_json::from_value(json!({"image": "a", "runStrategy": "Always"})).unwrap();
        let b: VirtualMachineSpec =
            serde_json::from_value(json!({"image": "a", "runStrategy": "Halted"})).unwrap();
        let c: VirtualMachineSpec = serde_json::from_value(json!({"image": "b"})).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
