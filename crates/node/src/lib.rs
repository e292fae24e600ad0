//! corral-node: the node agent (kubelet's job, through the engine).
//!
//! Owns running the pods bound to this node: each pod an engine pod, its containers engine
//! containers; status written back to the store; the Node object and its Lease. Does not own
//! the API (corral-api), scheduling (corral-control) or the runtime (corral-engine and below).
//!
//! The shape is the kubelet's `syncPod`: [`NodeAgent::run`] lists and watches the pods in the
//! store, and every pod whose `spec.nodeName` is this node gets a worker (`worker`) that
//! converges what runs in the engine to what the pod says, on each change and every
//! [`NodeConfig::resync_interval`], and writes the pod's `status`. Nothing is kept that
//! cannot be rebuilt from the store and the engine: engine pods and containers carry the
//! pod's uid and the container's name and restart count as labels (`runtime`), so an agent
//! that starts again (after `kill -9` too) adopts what runs — no restart, no duplicate — and
//! removes what belongs to pods that are gone.
//!
//! Pieces, one file each: the Node and its Lease (`node`), host facts (`host`), pod workers
//! (`worker`, its sandbox, sources and volumes in `prepare`, container starts in `start`, deletion in `teardown`), status (`status`),
//! lifecycle hooks (`hooks`), environment (`env`), volumes (`volumes`), claims and the removal of deleted volumes'
//! data (`claims`), the engine specs (`runspec`), probes (`probe`),
//! the restart back-off (`backoff`), waits on
//! processes that are not children (`exits`), quantities and QoS (`quantity`), events (`events`),
//! store access (`kv`), resource metrics ([`metrics`]: PodMetrics and NodeMetrics for
//! `kubectl top` and autoscalers, metrics-server's job), and the service proxy ([`proxy`]:
//! Services' virtual IPs and node ports in nftables, kube-proxy's job), and the
//! VirtualMachines placed on this node (`vms`: kept running as their `runStrategy` says). The API server's streams (logs, exec, attach, port-forward) are
//! served by [`streams`], which finds the engine containers through
//! [`NodeAgent::container_id`] and [`NodeAgent::pod_ip`].

#![warn(missing_docs)]

mod agent;
pub mod backoff;
pub mod claims;
mod clock;
pub mod env;
mod events;
mod exits;
mod hooks;
mod host;
mod kv;
pub mod metrics;
mod node;
mod prepare;
pub mod probe;
pub mod proxy;
pub mod quantity;
pub mod runspec;
pub mod runtime;
mod start;
pub mod status;
pub mod streams;
mod teardown;
mod vms;
pub mod volumes;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_engine::Engine;
use corral_store::Store;

pub use node::{KUBELET_VERSION, RUNTIME_VERSION};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name (the Node object's, and what `spec.nodeName` says).
    pub node_name: String,
    /// The corral network pods join (default `corral`, the default bridge network).
    pub network: String,
    /// CPUs to report instead of the host's.
    pub cpus: Option<u32>,
    /// Memory to report instead of the host's, bytes.
    pub memory: Option<u64>,
    /// The most pods the node takes (`status.capacity.pods`).
    pub max_pods: u32,
    /// More labels for the Node (`node-role.kubernetes.io/control-plane: ""`).
    pub labels: BTreeMap<String, String>,
    /// The node's address instead of the default route's source address.
    pub internal_ip: Option<IpAddr>,
    /// How often the Lease is renewed (and the Node's conditions checked).
    pub lease_interval: Duration,
    /// How often the Node's status is written when nothing changed.
    pub status_interval: Duration,
    /// How often each pod is synced when nothing happened (container states, probes).
    pub resync_interval: Duration,
}

impl NodeConfig {
    /// The defaults for a node named `node_name`.
    pub fn new(node_name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            node_name: node_name.into(),
            network: corral_net::store::DEFAULT_NETWORK.to_owned(),
            cpus: None,
            memory: None,
            max_pods: 110,
            labels: BTreeMap::new(),
            internal_ip: None,
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(1),
        }
    }
}

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store.
    #[error("store: {what}")]
    Store {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        err: corral_store::StoreError,
    },
    /// The engine.
    #[error("engine: {what}")]
    Engine {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        err: Box<corral_engine::EngineError>,
    },
    /// The pod does not run on this node.
    #[error("pod {namespace}/{name} is not running on node {node}")]
    PodNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// This node.
        node: String,
    },
    /// No container of that name.
    #[error("container {container} is not valid for pod {pod}: choose one of [{}]", containers.join(" "))]
    ContainerNotFound {
        /// The pod.
        pod: String,
        /// The name asked for.
        container: String,
        /// Its containers.
        containers: Vec<String>,
    },
    /// No container named, and the pod has several.
    #[error("a container name must be specified for pod {pod}, choose one of: [{}]", containers.join(" "))]
    ContainerNotChosen {
        /// The pod.
        pod: String,
        /// Its containers.
        containers: Vec<String>,
    },
    /// The container has not been created yet.
    #[error("container {container} in pod {pod} is waiting to start")]
    NotStarted {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// No earlier run of the container is kept.
    #[error("previous terminated container {container} in pod {pod} not found")]
    NoPrevious {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
}

/// What the engine runs for one pod, as its worker last saw it (for the API server's
/// streams).
#[derive(Debug, Clone, Default)]
pub(crate) struct PodRuntime {
    pub uid: String,
    pub ip: Option<IpAddr>,
    /// App containers, in spec order.
    pub app: Vec<String>,
    /// Init containers, in spec order.
    pub init: Vec<String>,
    /// Container → its latest engine container.
    pub current: HashMap<String, String>,
    /// Container → the engine container of its run before the latest.
    pub previous: HashMap<String, String>,
}

/// The node agent.
pub struct NodeAgent {
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cfg: NodeConfig,
    pub(crate) host: host::HostInfo,
    pub(crate) events: Arc<events::Recorder>,
    pub(crate) reaper: runtime::Reaper,
    /// Wakes workers when their containers' monitors end.
    pub(crate) exits: exits::Exits,
    pub(crate) runtime: Mutex<HashMap<(String, String), PodRuntime>>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.cfg.node_name)
            .field("root", &self.engine.root())
            .finish()
    }
}

impl NodeAgent {
    /// The agent of node `cfg.node_name`, running pods through `engine`, with `store` as the
    /// control plane's state.
    pub fn new(engine: Engine, store: Arc<dyn Store>, cfg: NodeConfig) -> NodeAgent {
        NodeAgent {
            host: host::HostInfo::gather(cfg.internal_ip),
            events: Arc::new(events::Recorder::new(store.clone(), cfg.node_name.clone())),
            engine,
            store,
            cfg,
            reaper: Default::default(),
            exits: exits::Exits::new(),
            runtime: Default::default(),
        }
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.cfg.node_name
    }

    /// The node's address (its Node's InternalIP, the pods' `hostIP`).
    pub fn host_ip(&self) -> IpAddr {
        self.host.ip
    }

    fn pod_runtime(&self, ns: &str, pod: &str) -> Result<PodRuntime, NodeError> {
        self.runtime
            .lock()
            .expect("runtime lock")
            .get(&(ns.to_owned(), pod.to_owned()))
            .cloned()
            .ok_or_else(|| NodeError::PodNotFound {
                namespace: ns.to_owned(),
                name: pod.to_owned(),
                node: self.cfg.node_name.clone(),
            })
    }

    /// Which container `container` means: the named one, or the only app container.
    fn choose(rt: &PodRuntime, pod: &str, container: Option<&str>) -> Result<String, NodeError> {
        match container {
            Some(c) => {
                if rt.app.iter().chain(rt.init.iter()).any(|n| n == c) {
                    Ok(c.to_owned())
                } else {
                    Err(NodeError::ContainerNotFound {
                        pod: pod.to_owned(),
                        container: c.to_owned(),
                        containers: rt.app.iter().chain(rt.init.iter()).cloned().collect(),
                    })
                }
            }
            None if rt.app.len() == 1 => Ok(rt.app[0].clone()),
            None => Err(NodeError::ContainerNotChosen {
                pod: pod.to_owned(),
                containers: rt.app.clone(),
            }),
        }
    }

    /// The engine container of a pod's container (`None`: the only one; an error naming the
    /// containers if there are several): its latest run.
    pub fn container_id(
        &self,
        ns: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<String, NodeError> {
        let rt = self.pod_runtime(ns, pod)?;
        let c = Self::choose(&rt, pod, container)?;
        rt.current.get(&c).cloned().ok_or(NodeError::NotStarted {
            pod: pod.to_owned(),
            container: c,
        })
    }

    /// The engine container of the run before the latest (`kubectl logs --previous`); kept
    /// until the next restart.
    pub fn previous_container_id(
        &self,
        ns: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<String, NodeError> {
        let rt = self.pod_runtime(ns, pod)?;
        let c = Self::choose(&rt, pod, container)?;
        rt.previous.get(&c).cloned().ok_or(NodeError::NoPrevious {
            pod: pod.to_owned(),
            container: c,
        })
    }

    /// The pod's address on its network, while its sandbox runs on this node.
    pub fn pod_ip(&self, ns: &str, pod: &str) -> Option<IpAddr> {
        self.pod_runtime(ns, pod).ok().and_then(|r| r.ip)
    }

    /// The engine this agent runs pods through.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Runs `f` with the engine on a blocking thread (engine calls block).
pub(crate) async fn blocking<T: Send + 'static>(
    engine: &Engine,
    f: impl FnOnce(&Engine) -> T + Send + 'static,
) -> T {
    let e = engine.clone();
    match tokio::task::spawn_blocking(move || f(&e)).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
