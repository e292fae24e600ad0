//! The agent's view of the engine: how Kubernetes pods and containers are named and labelled
//! there, finding them again by their labels (after a restart of the agent, that is all there
//! is to go by), and reaping the processes the engine leaves as children of this long-lived
//! process.
//!
//! A pod is an engine pod `k8s_<ns>_<name>_<uid8>` labelled with the pod's uid, namespace
//! and name; each run of a container is an engine container
//! `k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`, labelled with the container's name, the
//! pod's uid and the attempt (the restart count), so that a restart makes a new container
//! and the previous one stays for `logs --previous` (the kubelet's naming, `dockershim`).
//!
//! Engine calls block (they start processes, take file locks and wait): they run on
//! tokio's blocking threads, never on the async workers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use corral_container::State;
use corral_engine::Engine;

/// The pod uid label, on engine pods and containers.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// The pod namespace label.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod name label.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// The container name label, on engine containers.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The attempt (restart count) label, on engine containers.
pub const LABEL_ATTEMPT: &str = "io.kubernetes.container.restartCount";
/// Marks init containers.
pub const LABEL_INIT: &str = "io.corral.container.init";

/// Keeps what engine names allow (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); Kubernetes names are
/// DNS labels and subdomains, so this changes nothing for valid objects.
/// Engine names are at most 255 bytes: each part is cut to 63 (a DNS label's length).
fn clean(s: &str) -> String {
    s.chars()
        .take(63)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn uid8(uid: &str) -> String {
    clean(
        &uid.chars()
            .filter(|c| *c != '-')
            .take(8)
            .collect::<String>(),
    )
}

/// The engine pod's name for a Kubernetes pod.
pub fn pod_name(ns: &str, name: &str, uid: &str) -> String {
    format!("k8s_{}_{}_{}", clean(ns), clean(name), uid8(uid))
}

/// The engine container's name for one run of a Kubernetes container.
pub fn container_name(container: &str, pod: &str, ns: &str, uid: &str, attempt: u32) -> String {
    format!(
        "k8s_{}_{}_{}_{}_{attempt}",
        clean(container),
        clean(pod),
        clean(ns),
        uid8(uid)
    )
}

/// One run of a Kubernetes container: an engine container.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The engine container's id.
    pub id: String,
    /// The Kubernetes container's name.
    pub container: String,
    /// Which run (0 first).
    pub attempt: u32,
    /// An init container's.
    pub init: bool,
    /// Its state when last read.
    pub state: State,
}

/// What the engine holds of Kubernetes pods, by pod uid.
#[derive(Debug, Default)]
pub struct Scan {
    /// Engine pods: uid → (engine pod id, namespace, name).
    pub pods: HashMap<String, (String, String, String)>,
    /// Engine containers: uid → runs.
    pub containers: HashMap<String, Vec<Instance>>,
}

/// Finds every engine pod and container with the agent's labels (blocking).
pub fn scan(engine: &Engine) -> corral_engine::Result<Scan> {
    let mut out = Scan::default();
    for p in engine.pods()? {
        if let Some(uid) = p.labels.get(LABEL_POD_UID) {
            out.pods.insert(
                uid.clone(),
                (
                    p.id.clone(),
                    p.labels
                        .get(LABEL_POD_NAMESPACE)
                        .cloned()
                        .unwrap_or_default(),
                    p.labels.get(LABEL_POD_NAME).cloned().unwrap_or_default(),
                ),
            );
        }
    }
    let cs = engine.containers()?;
    for id in cs.ids()? {
        let record = corral_engine::record::Record::load(&cs.dir(&id));
        let (Some(uid), Some(name)) = (
            record.labels.get(LABEL_POD_UID),
            record.labels.get(LABEL_CONTAINER_NAME),
        ) else {
            continue;
        };
        let Ok(state) = cs.load(&id) else { continue };
        out.containers
            .entry(uid.clone())
            .or_default()
            .push(Instance {
                id: id.clone(),
                container: name.clone(),
                attempt: record
                    .labels
                    .get(LABEL_ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                init: record.labels.get(LABEL_INIT).is_some_and(|v| v == "true"),
                state,
            });
    }
    Ok(out)
}

/// Reads the state of engine containers (blocking); absent ones are left out.
pub fn states(engine: &Engine, ids: &[String]) -> HashMap<String, State> {
    let Ok(cs) = engine.containers() else {
        return HashMap::new();
    };
    ids.iter()
        .filter_map(|id| cs.load(id).ok().map(|s| (id.clone(), s)))
        .collect()
}

/// Children of this process the engine started and does not wait for (container monitors,
/// pod sandboxes): they outlive any call, and when they end they are zombies of this process
/// until reaped. Only pids put here are waited for, so a child someone else waits for (an
/// exec probe's client) is never taken from them.
#[derive(Debug, Default)]
pub struct Reaper {
    pids: Mutex<BTreeSet<i32>>,
}

impl Reaper {
    /// Watches `pid`.
    pub fn watch(&self, pid: i32) {
        if pid > 0 && pid as u32 != std::process::id() {
            self.pids.lock().expect("reaper lock").insert(pid);
        }
    }

    /// Reaps those that ended; forgets those that are not children of this process.
    pub fn reap(&self) {
        use rustix::process::{waitpid, Pid, WaitOptions};
        let mut pids = self.pids.lock().expect("reaper lock");
        pids.retain(|&pid| {
            let Some(p) = Pid::from_raw(pid) else {
                return false;
            };
            // Ok(None): a child that still runs; Err (ECHILD): not ours, or already reaped.
            matches!(waitpid(Some(p), WaitOptions::NOHANG), Ok(None))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_are_valid_and_distinct() {
        let uid = "6b3c9a1e-0f4e-4a55-9d8e-0123456789ab";
        assert_eq!(pod_name("default", "web", uid), "k8s_default_web_6b3c9a1e");
        assert_eq!(
            container_name("nginx", "web", "default", uid, 3),
            "k8s_nginx_web_default_6b3c9a1e_3"
        );
        for n in [
            pod_name("kube-system", "a.b-c", uid),
            container_name("x", "y", "z", "", 0),
        ] {
            corral_container::state::check_name(&n).unwrap();
        }
    }

    #[test]
    fn reaper_forgets_strangers() {
        let r = Reaper::default();
        r.watch(1);
        r.reap();
        assert!(r.pids.lock().unwrap().is_empty());
    }
}
