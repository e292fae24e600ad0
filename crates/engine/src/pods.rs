//! Pods: containers that share one network namespace (one address, one set of published
//! ports, one `localhost`), one IPC and one UTS namespace, created and removed together — as
//! podman's pods and Kubernetes' pod sandboxes are.
//!
//! A pod is a record under `ROOT/pods/<id>/` (`pod.json`, and the `hosts`/`resolv.conf` its
//! containers share) and, while it runs, a sandbox process holding its namespaces
//! (corral-container's [`corral_container::sandbox`]). Its networks' endpoints belong to the
//! pod (owner = the pod's id). A container made with `--pod NAME` joins the sandbox's
//! namespaces at each start; starting it starts the pod if needed.
//!
//! Crash safety: the record is written whole under a temporary name and renamed into place,
//! and the name is claimed last; a sandbox whose record says it runs but whose process is gone
//! reads as stopped.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;

use corral_container::sandbox::{self, Sandbox};
use corral_container::Status;
use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::spec::{Isolation, Networking};
use crate::{Engine, EngineError, Result};

/// A pod to create.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Its name; generated when `None`.
    pub name: Option<String>,
    /// Its hostname (default: its name).
    pub hostname: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Networks, aliases and published ports, for the whole pod.
    pub networking: Networking,
    /// [`Isolation::Vm`]: the pod's containers run inside one VM of its own.
    pub isolation: Isolation,
    /// A VM pod's virtual CPUs (default 1).
    pub cpus: Option<u32>,
    /// A VM pod's memory in bytes (default [`crate::pod_vm::POD_VM_MEMORY_MIB`] MiB).
    pub memory: Option<u64>,
    /// DNS search domains of its members (a Kubernetes pod's `<ns>.svc.cluster.local` ...).
    pub dns_search: Vec<String>,
    /// resolv.conf options of its members (`ndots:5`); given ones replace corral's.
    pub dns_options: Vec<String>,
}

/// A pod's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created: String,
    /// Its hostname.
    pub hostname: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Networks, aliases and ports it asked for.
    pub networking: Networking,
    /// The sandbox, while it runs.
    pub sandbox: Option<Sandbox>,
    /// Whether it was ever started (a pod without a sandbox is then exited, not created).
    #[serde(default)]
    pub started: bool,
    /// Whether its containers share the host's kernel or run in one VM.
    #[serde(default)]
    pub isolation: Isolation,
    /// A VM pod's VM (its id).
    #[serde(default)]
    pub vm: Option<String>,
    /// Whether a VM pod's VM runs (read with the record, not stored).
    #[serde(skip)]
    pub vm_running: bool,
    /// DNS search domains of its members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// resolv.conf options of its members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
}

/// The members' resolv.conf: the network's, with the pod's search domains and options.
fn pod_resolv_conf(base: String, pod: &Pod) -> String {
    if pod.dns_search.is_empty() && pod.dns_options.is_empty() {
        return base;
    }
    let mut out: String = base
        .lines()
        .filter(|l| pod.dns_options.is_empty() || !l.starts_with("options "))
        .map(|l| format!("{l}\n"))
        .collect();
    if !pod.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", pod.dns_search.join(" ")));
    }
    if !pod.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", pod.dns_options.join(" ")));
    }
    out
}

impl Pod {
    /// Whether its sandbox (or its VM) runs.
    pub fn running(&self) -> bool {
        self.vm_running || self.sandbox.is_some_and(|s| s.alive())
    }
}

fn pods_dir(engine: &Engine) -> PathBuf {
    engine.root.join("pods")
}

impl Engine {
    fn pod_dir(&self, id: &str) -> PathBuf {
        pods_dir(self).join(id)
    }

    fn save_pod(&self, p: &Pod) -> Result<()> {
        let dir = self.pod_dir(&p.id);
        let tmp = dir.join(".pod.json.tmp");
        let path = dir.join("pod.json");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(p)
                .map_err(std::io::Error::other)
                .map_err(crate::io_err("writing", &tmp))?,
        )
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(crate::io_err("writing", &path))
    }

    /// Reads a pod by id.
    pub fn pod(&self, id: &str) -> Result<Pod> {
        let path = self.pod_dir(id).join("pod.json");
        let data = std::fs::read(&path)
            .map_err(|_| EngineError::NotFound(format!("no such pod: {id}")))?;
        let mut pod: Pod = serde_json::from_slice(&data).map_err(|e| {
            EngineError::Conflict(format!(
                "corrupt pod record {} ({e}): remove it with `corral pod rm -f {id}`",
                path.display()
            ))
        })?;
        if let Some(vm) = &pod.vm {
            pod.vm_running = self.pod_vm_running(vm);
        }
        Ok(pod)
    }

    /// Every pod, newest first.
    pub fn pods(&self) -> Result<Vec<Pod>> {
        let mut out = Vec::new();
        let dir = pods_dir(self);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                if let Ok(p) = self.pod(&name) {
                    out.push(p);
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// Finds a pod by name, id or id prefix.
    pub fn resolve_pod(&self, what: &str) -> Result<Pod> {
        let by_name = pods_dir(self).join("names").join(what);
        if let Ok(id) = std::fs::read_to_string(&by_name) {
            if let Ok(p) = self.pod(id.trim()) {
                return Ok(p);
            }
        }
        let found: Vec<Pod> = self
            .pods()?
            .into_iter()
            .filter(|p| what.len() >= 3 && p.id.starts_with(what))
            .collect();
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(EngineError::NotFound(format!("no such pod: {what}"))),
            _ => Err(EngineError::invalid(format!(
                "{what} names more than one pod: give more of the id"
            ))),
        }
    }

    /// Makes a pod (its sandbox is started by `pod start`, or by the start of a container in
    /// it).
    pub fn create_pod(&self, spec: &PodSpec) -> Result<Pod> {
        let id = corral_container::state::new_id().map_err(crate::io_err(
            "reading",
            std::path::Path::new("/dev/urandom"),
        ))?;
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("pod-{}", &id[..12]));
        corral_container::state::check_name(&name)
            .map_err(|e| EngineError::invalid(e.to_string()))?;
        // Networks and ports are checked now, before anything exists.
        let (mode, _) = crate::networks::requested_attachments(self, &spec.networking, &[])?;
        if mode == corral_container::config::NetworkMode::Host {
            return Err(EngineError::invalid(
                "--network host: a pod has a network namespace of its own",
            ));
        }
        let vm = spec.isolation == Isolation::Vm;
        if !vm && (spec.cpus.is_some() || spec.memory.is_some()) {
            return Err(EngineError::invalid(
                "--cpus/--memory size a pod's VM: give them with --isolation vm",
            ));
        }
        let mut pod = Pod {
            id: id.clone(),
            name: name.clone(),
            created: corral_container::state::now(),
            hostname: spec.hostname.clone().unwrap_or_else(|| name.clone()),
            labels: spec.labels.clone(),
            networking: spec.networking.clone(),
            sandbox: None,
            started: false,
            isolation: spec.isolation,
            vm: None,
            vm_running: false,
            dns_search: spec.dns_search.clone(),
            dns_options: spec.dns_options.clone(),
        };
        let dir = self.pod_dir(&id);
        std::fs::create_dir_all(pods_dir(self).join("names"))
            .map_err(crate::io_err("creating", &pods_dir(self)))?;
        std::fs::create_dir(&dir).map_err(crate::io_err("creating", &dir))?;
        if vm {
            let memory_mib = spec
                .memory
                .map_or(crate::pod_vm::POD_VM_MEMORY_MIB, |b| b.div_ceil(1 << 20));
            match self.create_pod_vm(&pod, spec.cpus.unwrap_or(1), memory_mib) {
                Ok(vm) => pod.vm = Some(vm),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        let undo = |pod: &Pod| {
            if let Some(vm) = &pod.vm {
                let _ = self.remove_vm(vm, true);
            }
            let _ = std::fs::remove_dir_all(&dir);
        };
        if let Err(e) = self.save_pod(&pod) {
            undo(&pod);
            return Err(e);
        }
        // The name last: the commit point.
        let name_path = pods_dir(self).join("names").join(&name);
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name_path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, id.as_bytes()));
        if let Err(e) = claimed {
            undo(&pod);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(EngineError::Conflict(format!(
                    "the pod name {name:?} is already in use: remove that pod or choose another name"
                )));
            }
            return Err(crate::io_err("creating", &name_path)(e));
        }
        self.emit(Event::new("pod", "create", &id).attr("name", &name));
        Ok(pod)
    }

    /// Starts a pod's sandbox and connects it to its networks (nothing if it runs).
    pub fn start_pod(&self, what: &str) -> Result<Pod> {
        let mut pod = self.resolve_pod(what)?;
        if pod.running() {
            return Ok(pod);
        }
        if let Some(vm) = pod.vm.clone() {
            self.boot_pod_vm(&vm)?;
            pod.started = true;
            pod.vm_running = true;
            self.save_pod(&pod)?;
            self.emit(Event::new("pod", "start", &pod.id).attr("name", &pod.name));
            return Ok(pod);
        }
        // What a dead sandbox left: its endpoints.
        let _ = self.networks().release(&pod.id);
        let sb = sandbox::spawn(&self.exe, &pod.hostname).map_err(|e| EngineError::Failed {
            code: 125,
            message: crate::containers::chain(&e),
        })?;
        let (mode, reqs) = crate::networks::requested_attachments(self, &pod.networking, &[])?;
        let dir = self.pod_dir(&pod.id);
        let connected = (|| -> Result<()> {
            let mut eps = Vec::new();
            if mode == corral_container::config::NetworkMode::Networks {
                let path = sb.ns_path("net");
                let ns = std::fs::File::open(&path)
                    .map_err(crate::io_err("opening the network namespace", &path))?;
                eps = self.networks().attach_container(
                    &pod.id,
                    &pod.name,
                    ns.as_fd(),
                    &reqs,
                    0,
                    &self.exe,
                )?;
            }
            let hosts = corral_net::attach::hosts_file(&pod.hostname, &pod.name, &eps);
            std::fs::write(dir.join("hosts"), hosts).map_err(crate::io_err("writing", &dir))?;
            if let Some(r) = corral_net::attach::resolv_conf(&eps) {
                std::fs::write(dir.join("resolv.conf"), pod_resolv_conf(r, &pod))
                    .map_err(crate::io_err("writing", &dir))?;
            }
            Ok(())
        })();
        if let Err(e) = connected {
            let _ = self.networks().release(&pod.id);
            sb.stop();
            return Err(e);
        }
        pod.sandbox = Some(sb);
        pod.started = true;
        if let Err(e) = self.save_pod(&pod) {
            let _ = self.networks().release(&pod.id);
            sb.stop();
            return Err(e);
        }
        self.emit(Event::new("pod", "start", &pod.id).attr("name", &pod.name));
        Ok(pod)
    }

    /// The containers in a pod, by id.
    pub fn pod_members(&self, pod_id: &str) -> Result<Vec<String>> {
        let cs = self.containers()?;
        Ok(cs
            .ids()?
            .into_iter()
            .filter(|id| crate::record::Record::load(&cs.dir(id)).pod.as_deref() == Some(pod_id))
            .collect())
    }

    /// Stops a pod: its containers, then its sandbox.
    pub fn stop_pod(&self, what: &str, timeout: Option<u64>) -> Result<()> {
        let mut pod = self.resolve_pod(what)?;
        let cs = self.containers()?;
        for id in self.pod_members(&pod.id)? {
            if cs.load(&id).is_ok_and(|s| s.status == Status::Running) {
                self.stop(&id, timeout)?;
            }
        }
        if let Some(sb) = pod.sandbox.take() {
            sb.stop();
        }
        if let Some(vm) = &pod.vm {
            self.unmount_member_roots(&pod.id);
            self.stop_vm(vm, std::time::Duration::from_secs(timeout.unwrap_or(10)))?;
            pod.vm_running = false;
        }
        self.networks().release(&pod.id)?;
        self.save_pod(&pod)?;
        self.emit(Event::new("pod", "stop", &pod.id).attr("name", &pod.name));
        Ok(())
    }

    /// Removes a pod and its containers (running ones only with `force`).
    pub fn remove_pod(&self, what: &str, force: bool) -> Result<()> {
        let pod = self.resolve_pod(what)?;
        let members = self.pod_members(&pod.id)?;
        let cs = self.containers()?;
        if !force {
            let running: Vec<String> = members
                .iter()
                .filter_map(|id| cs.load(id).ok())
                .filter(|s| s.status == Status::Running)
                .map(|s| s.name)
                .collect();
            if !running.is_empty() || pod.running() {
                return Err(EngineError::Conflict(format!(
                    "pod {} is running{}: stop it first, or remove it with -f",
                    pod.name,
                    if running.is_empty() {
                        String::new()
                    } else {
                        format!(" (containers {})", running.join(", "))
                    }
                )));
            }
        }
        for id in &members {
            self.remove(id, true, true)?;
        }
        if let Some(sb) = pod.sandbox {
            sb.stop();
        }
        if let Some(vm) = &pod.vm {
            self.unmount_member_roots(&pod.id);
            if self.vms().config(vm).is_ok() {
                self.remove_vm(vm, true)?;
            }
        }
        self.networks().release(&pod.id)?;
        // Gone for everyone at once (the name), then the rest.
        let _ = std::fs::remove_file(pods_dir(self).join("names").join(&pod.name));
        let dir = self.pod_dir(&pod.id);
        std::fs::remove_dir_all(&dir).map_err(crate::io_err("removing", &dir))?;
        self.emit(Event::new("pod", "remove", &pod.id).attr("name", &pod.name));
        Ok(())
    }

    /// Before a pod member starts: the pod running, the member's view of it (the pod's
    /// namespaces to join, its hosts files), and the pod's network namespace to hand to the
    /// monitor.
    pub(crate) fn prepare_pod_member(
        &self,
        cs: &corral_container::Containers,
        id: &str,
        pod_id: &str,
    ) -> Result<std::os::fd::OwnedFd> {
        let pod = self.start_pod(pod_id)?;
        let sb = pod
            .sandbox
            .ok_or_else(|| EngineError::Conflict("the pod's sandbox is not running".into()))?;
        let mut cfg = cs.config(id)?;
        cfg.join_namespaces
            .retain(|(k, _)| k != "ipc" && k != "uts");
        cfg.join_namespaces.push(("ipc".into(), sb.ns_path("ipc")));
        cfg.join_namespaces.push(("uts".into(), sb.ns_path("uts")));
        cfg.hostname = pod.hostname.clone();
        cs.save_config(id, &cfg)?;
        let dir = cs.dir(id);
        let pdir = self.pod_dir(&pod.id);
        for f in ["hosts", "resolv.conf"] {
            if pdir.join(f).exists() {
                std::fs::copy(pdir.join(f), dir.join(f)).map_err(crate::io_err("copying", &dir))?;
            }
        }
        let path = sb.ns_path("net");
        let ns = std::fs::File::open(&path)
            .map_err(crate::io_err("opening the network namespace", &path))?;
        Ok(ns.into())
    }
}
