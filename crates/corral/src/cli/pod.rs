//! `pod ...`: groups of containers that share one network, IPC and UTS namespace.

use clap::{Args, Subcommand};

/// `corral pod ...`: podman's names.
#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Make a pod: its network (address, published ports, DNS name) and hostname are shared
    /// by every container run in it with `corral run --pod NAME`.
    Create(Box<PodCreate>),
    /// List pods.
    #[command(visible_alias = "ps", alias = "list")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show pods as JSON.
    Inspect {
        /// Pods.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Start pods and their containers.
    Start {
        /// Pods.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Stop pods: their containers, then their sandbox.
    Stop {
        /// Seconds to wait before SIGKILL (default: each container's own, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// Pods.
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods and their containers.
    #[command(alias = "remove")]
    Rm {
        /// Stop running pods first.
        #[arg(short, long)]
        force: bool,
        /// Pods.
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

/// `corral pod create`'s flags.
#[derive(Debug, Args)]
pub struct PodCreate {
    /// The pod's name (default: `pod-<id>`).
    #[arg(long)]
    pub name: Option<String>,
    /// The pod's hostname (default: its name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set a label: `KEY=VALUE` (repeatable).
    #[arg(short = 'l', long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Networks to join: a corral network's name, or none (repeatable).
    #[arg(long, value_name = "NAME")]
    pub network: Vec<String>,
    /// Another DNS name of the pod on its networks (repeatable).
    #[arg(long, value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a port of the pod: `[IP:][HOSTPORT:]PORT[/tcp|udp]`.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// A DNS search domain of the pod's containers (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolv.conf option of the pod's containers, e.g. `ndots:5` (repeatable).
    #[arg(long, value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Start its sandbox now (otherwise the first container's start does).
    #[arg(long)]
    pub start: bool,
    /// `container` (the default: the pod's containers share the host's kernel) or `vm`:
    /// they run together inside one VM of the pod's own, with its own kernel.
    #[arg(long, value_name = "LEVEL", default_value = "container")]
    pub isolation: String,
    /// Virtual CPUs of a VM pod (default 1).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory of a VM pod: `512m`, `2g` (default 512m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
}
