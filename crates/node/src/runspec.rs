//! A Kubernetes pod and its containers as the engine's specs: the pod an engine pod (its
//! network, IPC and UTS namespaces, hostname, host ports), each container an engine container
//! in it — image and pull policy, `command` → entrypoint, `args` → cmd (both with `$(VAR)`
//! expanded from the container's environment), environment, working directory, the security
//! context (pod-level user, group and `fsGroup` as defaults for each container's), resource
//! limits (memory, CPU quota, CPU shares from the request), terminal and stdin, mounts.
//!
//! A pod of the RuntimeClass handler `corral-vm` (`runtimeClassName: vm`) is an engine pod
//! with `Isolation::Vm`: one VM of its own holds its containers, as a Kata pod does. The VM
//! is sized from the containers' limits (or requests) plus an overhead for the guest, and the
//! VM is the limit: its containers get no cgroup limits of their own.
//!
//! Restart policy is the agent's, never the engine's: every container is made with
//! `restart: no`. The translation is pure; [`crate::volumes`] makes the mounts' sources.

use std::collections::BTreeMap;

use corral_engine::pods::PodSpec as EnginePodSpec;
use corral_engine::spec::{ContainerSpec, Isolation, Mount, Networking, PullPolicy, Seccomp};
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};

use crate::runtime::{
    LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_INIT, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
};
use crate::{env, quantity};

/// `imagePullPolicy`, defaulted as the API server does: `Always` for `:latest` or no tag,
/// `IfNotPresent` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePull {
    /// Pull at every container start.
    Always,
    /// Pull when the store lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// A container's pull policy.
pub fn pull_policy(c: &Container) -> ImagePull {
    match c.image_pull_policy.as_deref() {
        Some("Always") => ImagePull::Always,
        Some("Never") => ImagePull::Never,
        Some("IfNotPresent") => ImagePull::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or("");
            // The tag is after the last ':' that follows the last '/' (a registry port is
            // not a tag); a digest pins the image.
            let last = image.rsplit('/').next().unwrap_or(image);
            let tag = if image.contains('@') {
                Some("digest")
            } else {
                last.split_once(':').map(|(_, t)| t)
            };
            match tag {
                None | Some("latest") => ImagePull::Always,
                Some(_) => ImagePull::IfNotPresent,
            }
        }
    }
}

/// The labels of an engine pod.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (LABEL_POD_UID.into(), m.uid.clone().unwrap_or_default()),
        (
            LABEL_POD_NAMESPACE.into(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (LABEL_POD_NAME.into(), m.name.clone().unwrap_or_default()),
    ])
}

/// The engine pod for a Kubernetes pod, on `network`.
/// The RuntimeClass handler of corral's ordinary pods.
pub const HANDLER_CONTAINER: &str = "corral";
/// The RuntimeClass handler of pods that run in a VM of their own.
pub const HANDLER_VM: &str = "corral-vm";
/// What a VM pod's guest needs beyond its containers' memory.
const VM_OVERHEAD: u64 = 256 << 20;
/// The least memory a VM pod gets.
const VM_MIN_MEMORY: u64 = 512 << 20;

/// The VM's size for a pod: (vCPUs, memory in bytes) — the sums of its containers' limits
/// (requests where no limit is set), at least 1 vCPU and 512 MiB, memory plus an overhead.
pub fn vm_size(pod: &Pod) -> (u32, u64) {
    let spec = pod.spec.clone().unwrap_or_default();
    let (mut cpu, mut mem) = (0.0f64, 0u64);
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        let (l, q) = (r.limits.unwrap_or_default(), r.requests.unwrap_or_default());
        if let Some(c) = l.get("cpu").or(q.get("cpu")).and_then(quantity::cpu_cores) {
            cpu += c;
        }
        if let Some(m) = l
            .get("memory")
            .or(q.get("memory"))
            .and_then(quantity::bytes)
        {
            mem += m;
        }
    }
    let cpus = (cpu.ceil() as u32).max(1);
    (cpus, (mem + VM_OVERHEAD).max(VM_MIN_MEMORY))
}

/// The engine pod for `pod`, in a VM of its own when `isolation` says so.
pub fn engine_pod(pod: &Pod, name: &str, network: &str, isolation: Isolation) -> EnginePodSpec {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = spec
        .hostname
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .map(|h| h.chars().take(63).collect());
    let mut publish = Vec::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            let ip = p
                .host_ip
                .as_deref()
                .filter(|i| !i.is_empty())
                .map(|i| format!("{i}:"))
                .unwrap_or_default();
            publish.push(format!("{ip}{hp}:{}/{proto}", p.container_port));
        }
    }
    let mut out = EnginePodSpec {
        name: Some(name.to_owned()),
        hostname,
        labels: pod_labels(pod),
        networking: Networking {
            networks: vec![network.to_owned()],
            publish,
            ..Default::default()
        },
        isolation,
        ..Default::default()
    };
    (out.dns_search, out.dns_options) = dns(pod);
    if isolation == Isolation::Vm {
        let (cpus, memory) = vm_size(pod);
        out.cpus = Some(cpus);
        out.memory = Some(memory);
    }
    out
}

/// The search domains and resolver options of a pod, as the kubelet gives them: for
/// `dnsPolicy: ClusterFirst` (the default) the cluster's (`<ns>.svc.cluster.local
/// svc.cluster.local cluster.local`, `ndots:5`), then the pod's `dnsConfig`.
pub fn dns(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (mut search, mut options) = match spec.dns_policy.as_deref() {
        None | Some("ClusterFirst") | Some("ClusterFirstWithHostNet") => (
            vec![
                format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            vec!["ndots:5".to_string()],
        ),
        _ => (Vec::new(), Vec::new()),
    };
    if let Some(cfg) = &spec.dns_config {
        search.extend(cfg.searches.iter().flatten().cloned());
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    (search, options)
}

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What [`container_spec`] needs besides the pod and the container.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    /// The engine pod's id.
    pub engine_pod: &'a str,
    /// The engine container's name.
    pub name: String,
    /// Which run.
    pub attempt: u32,
    /// An init container.
    pub init: bool,
    /// The environment, resolved.
    pub env: Vec<(String, String)>,
    /// The mounts, made.
    pub mounts: Vec<Mount>,
    /// Where `Localhost` seccomp profiles are.
    pub seccomp_dir: &'a std::path::Path,
    /// The image's `USER` (for a `runAsGroup` without `runAsUser`).
    pub image_user: &'a str,
    /// The pod runs in a VM of its own (the VM is the limit).
    pub vm: bool,
}

/// The engine container for one run of `c`. `Err` is a configuration the engine cannot
/// express (the container's `CreateContainerConfigError`).
pub fn container_spec(
    pod: &Pod,
    c: &Container,
    ctx: RunContext<'_>,
) -> Result<ContainerSpec, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    let vars: std::collections::HashMap<String, String> = ctx.env.iter().cloned().collect();
    let expand = |s: &String| env::expand(s, &|n| vars.get(n).cloned());

    let mut labels = pod_labels(pod);
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    labels.insert(LABEL_ATTEMPT.into(), ctx.attempt.to_string());
    if ctx.init {
        labels.insert(LABEL_INIT.into(), "true".into());
    }

    let uid = csc.run_as_user.or(psc.run_as_user);
    let gid = csc.run_as_group.or(psc.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        // The image's user with the group given.
        (None, Some(g)) => {
            let u = ctx.image_user.split(':').next().unwrap_or("");
            Some(format!("{}:{g}", if u.is_empty() { "0" } else { u }))
        }
        (None, None) => None,
    };
    let mut group_add: Vec<String> = Vec::new();
    if let Some(g) = psc.fs_group {
        group_add.push(g.to_string());
    }
    for g in psc.supplemental_groups.iter().flatten() {
        if !group_add.contains(&g.to_string()) {
            group_add.push(g.to_string());
        }
    }

    let mut s = ContainerSpec {
        name: Some(ctx.name),
        image: c.image.clone().unwrap_or_default(),
        // The agent pulls before it creates (its own events and back-off).
        pull: PullPolicy::Missing,
        entrypoint: c
            .command
            .as_ref()
            .map(|cmd| cmd.iter().map(expand).collect()),
        command: c.args.iter().flatten().map(expand).collect(),
        env: ctx.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        group_add,
        interactive: c.stdin.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        mounts: ctx.mounts,
        read_only: csc.read_only_root_filesystem.unwrap_or(false),
        labels,
        restart: "no".into(),
        stop_timeout: Some(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64),
        pod: Some(ctx.engine_pod.to_owned()),
        ..Default::default()
    };
    if c.image.as_deref().is_none_or(str::is_empty) {
        return Err(format!("container {}: no image", c.name));
    }
    if ctx.vm {
        if !s.mounts.is_empty() {
            return Err(format!(
                "container {}: volumes are not supported with runtimeClassName vm yet (corral's VM pods share no host directory with their containers)",
                c.name
            ));
        }
        // The VM is the pod's boundary and its size is the limit.
        return Ok(s);
    }

    // Privileges.
    s.security.privileged = csc.privileged.unwrap_or(false);
    if let Some(caps) = &csc.capabilities {
        s.security.cap_add = caps.add.clone().unwrap_or_default();
        s.security.cap_drop = caps.drop.clone().unwrap_or_default();
    }
    s.security.no_new_privileges = csc.allow_privilege_escalation == Some(false);
    let profile: Option<SeccompProfile> =
        csc.seccomp_profile.clone().or(psc.seccomp_profile.clone());
    if let Some(p) = profile {
        s.security.seccomp = match p.type_.as_str() {
            "Unconfined" => Seccomp::Unconfined,
            "Localhost" => {
                let rel = p.localhost_profile.clone().unwrap_or_default();
                if rel.is_empty() || rel.contains("..") {
                    return Err(format!(
                        "container {}: a Localhost seccomp profile needs localhostProfile, a path under {}",
                        c.name,
                        ctx.seccomp_dir.display()
                    ));
                }
                Seccomp::Profile(ctx.seccomp_dir.join(rel))
            }
            _ => Seccomp::Default,
        };
    }
    for sc in psc.sysctls.iter().flatten() {
        s.sysctls.insert(sc.name.clone(), sc.value.clone());
    }

    // Resources.
    let res = c.resources.clone().unwrap_or_default();
    let limits = res.limits.unwrap_or_default();
    let requests = res.requests.unwrap_or_default();
    if let Some(q) = limits.get("memory") {
        s.resources.memory = Some(quantity::bytes(q).ok_or_else(|| {
            format!(
                "container {}: memory limit {:?} is not a quantity",
                c.name, q.0
            )
        })?);
    }
    if let Some(q) = limits.get("cpu") {
        let cores = quantity::cpu_cores(q).ok_or_else(|| {
            format!(
                "container {}: cpu limit {:?} is not a quantity",
                c.name, q.0
            )
        })?;
        if cores > 0.0 {
            s.resources.cpus = Some(cores.max(0.01));
        }
    }
    if let Some(q) = requests.get("cpu").or(limits.get("cpu")) {
        if let Some(m) = quantity::milli_cpu(q) {
            s.resources.cpu_shares = Some(quantity::cpu_shares(m));
        }
    }
    Ok(s)
}

/// Whether `runAsNonRoot` refuses to run: `image_user` is the image's `USER`.
pub fn check_non_root(pod: &Pod, c: &Container, image_user: &str) -> Result<(), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let psc = spec.security_context.unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    if csc.run_as_non_root.or(psc.run_as_non_root) != Some(true) {
        return Ok(());
    }
    let uid = match csc.run_as_user.or(psc.run_as_user) {
        Some(u) => u.to_string(),
        None => image_user.split(':').next().unwrap_or("").to_owned(),
    };
    match uid.as_str() {
        "" | "0" | "root" => Err("container has runAsNonRoot and image will run as root".into()),
        u if u.parse::<u32>().is_err() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({u}), cannot verify user is non-root"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "runAsNonRoot": true},
                "containers": [{
                    "name": "app", "image": "busybox:1.36",
                    "command": ["/bin/sh", "-c"], "args": ["echo $(GREETING) $$(HOME)"],
                    "workingDir": "/srv",
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "securityContext": {"runAsGroup": 3000, "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                  "requests": {"cpu": "250m"}},
                    "tty": true, "stdin": true
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn container_maps_to_engine_spec() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let s = container_spec(
            &p,
            c,
            RunContext {
                engine_pod: "podid",
                name: "k8s_app".into(),
                attempt: 2,
                init: false,
                env: vec![("GREETING".into(), "hi".into())],
                mounts: Vec::new(),
                seccomp_dir: std::path::Path::new("/s"),
                image_user: "",
                vm: false,
            },
        )
        .unwrap();
        assert_eq!(s.entrypoint, Some(vec!["/bin/sh".to_string(), "-c".into()]));
        assert_eq!(s.command, ["echo hi $(HOME)"]);
        assert_eq!(s.env, ["GREETING=hi"]);
        assert_eq!(s.user.as_deref(), Some("1000:3000"));
        assert_eq!(s.group_add, ["2000"]);
        assert_eq!(s.workdir.as_deref(), Some("/srv"));
        assert!(s.read_only && s.tty && s.interactive);
        assert!(s.security.no_new_privileges);
        assert_eq!(s.security.cap_add, ["NET_ADMIN"]);
        assert_eq!(s.security.cap_drop, ["ALL"]);
        assert_eq!(s.resources.memory, Some(128 << 20));
        assert_eq!(s.resources.cpus, Some(0.5));
        assert_eq!(s.resources.cpu_shares, Some(256));
        assert_eq!(s.restart, "no");
        assert_eq!(s.stop_timeout, Some(5));
        assert_eq!(s.pod.as_deref(), Some("podid"));
        assert_eq!(s.labels[LABEL_ATTEMPT], "2");
        assert_eq!(s.labels[LABEL_CONTAINER_NAME], "app");
        let ep = engine_pod(&p, "k8s_default_web_u1", "corral", Isolation::Container);
        assert_eq!(ep.networking.publish, ["8080:80/tcp"]);
        assert_eq!((ep.cpus, ep.memory), (None, None));
        // In a VM: sized from the limits (0.5 CPU → 1; 128 MiB + the guest → at least 512 MiB).
        let vm = engine_pod(&p, "k8s_default_web_u1", "corral", Isolation::Vm);
        assert_eq!(vm.isolation, Isolation::Vm);
        assert_eq!((vm.cpus, vm.memory), (Some(1), Some(512 << 20)));
        assert_eq!(ep.hostname.as_deref(), Some("web"));
        assert_eq!(ep.labels[LABEL_POD_UID], "u1");
        assert!(check_non_root(&p, c, "").is_ok());
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        let c = |image: &str, policy: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox", None)), ImagePull::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), ImagePull::Always);
        assert_eq!(
            pull_policy(&c("busybox:1.36", None)),
            ImagePull::IfNotPresent
        );
        assert_eq!(pull_policy(&c("reg:5000/busybox", None)), ImagePull::Always);
        assert_eq!(
            pull_policy(&c("reg:5000/bb:1", None)),
            ImagePull::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("bb@sha256:abc", None)),
            ImagePull::IfNotPresent
        );
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), ImagePull::Never);
    }

    #[test]
    fn run_as_non_root_refuses_root_images() {
        let mut p = pod();
        p.spec
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .run_as_user = None;
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        assert!(check_non_root(&p, &c, "").is_err());
        assert!(check_non_root(&p, &c, "0:0").is_err());
        assert!(check_non_root(&p, &c, "nobody").is_err());
        assert!(check_non_root(&p, &c, "65534").is_ok());
    }
}
