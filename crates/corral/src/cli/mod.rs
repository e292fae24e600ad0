//! The command line: every verb and flag, with the help text that teaches them. One file per
//! group of verbs; this one holds the top level.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod build;
mod compose;
mod container;
mod image;
mod network;
mod pod;
mod run;
mod vm;

pub use build::*;
pub use compose::*;
pub use container::*;
pub use image::*;
pub use network::*;
pub use pod::*;
pub use run::*;
pub use vm::*;

/// corral runs workloads at the isolation you pick — containers, virtual machines, containers
/// in VMs — from the same OCI images, joined by virtual networks.
#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    propagate_version = true,
    after_help = "Start here:\n  corral image import rootfs.tar mybox      make an image from a root filesystem tarball\n  corral pull localhost:5000/app:1.0        pull from a registry\n  corral image ls                           list images\n  corral info                               what this host offers\n\nState lives under --root (default /var/lib/corral, or $CORRAL_ROOT)."
)]
pub struct Cli {
    /// State directory: images, containers, VMs, networks, volumes.
    #[arg(
        long,
        global = true,
        env = "CORRAL_ROOT",
        default_value = "/var/lib/corral"
    )]
    pub root: PathBuf,

    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "CORRAL_LOG", default_value = "warn")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Containers(ContainerCommand),
    /// Manage containers (the same verbs as at the top: `corral container ls` is `corral ps`).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage pods: containers that share one network (address, ports), IPC and hostname.
    #[command(subcommand)]
    Pod(PodCommand),
    /// Show what happens to containers, VMs, images, networks and volumes, as it happens.
    Events(EventsArgs),
    /// Manage named volumes: create, list, inspect, remove, prune.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage virtual networks: create, list, inspect, remove, connect, disconnect, prune.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage virtual machines: run an image or a bootable disk as a VM with its own kernel.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Manage images: import, load, save, list, inspect, tag, remove, prune.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Build an image from a Dockerfile and a context directory.
    Build(BuildArgs),
    /// Run multi-service applications from compose files.
    Compose(ComposeArgs),
    /// Serve the Kubernetes API: kubectl and Kubernetes' clients run pods on this machine.
    ///
    /// Runs the API server (HTTPS, its own CA, a bearer token), the store, the scheduler,
    /// the controllers and this machine's node agent in one process. It writes a kubeconfig
    /// (`$CORRAL_ROOT/kubeconfig` unless `--kubeconfig` says otherwise): `export
    /// KUBECONFIG=...` and use kubectl. Stopping it leaves running pods running; starting it
    /// again adopts them.
    Serve(ServeArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Store credentials for a registry.
    Login(LoginArgs),
    /// Forget the credentials for a registry.
    Logout {
        /// The registry `host[:port]`.
        registry: String,
    },
    /// List images (alias of `image ls`).
    Images(LsArgs),
    /// Remove images (alias of `image rm`).
    Rmi(RmArgs),
    /// Load an image archive (alias of `image load`).
    Load(LoadArgs),
    /// Save an image as an OCI archive (alias of `image save`).
    Save(SaveArgs),
    /// Import a root filesystem tarball (alias of `image import`).
    Import(ImportArgs),
    /// Add a name to an image (alias of `image tag`).
    Tag(TagArgs),
    /// Show corral's version.
    Version {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what this host offers: kernel, cgroups, KVM, the state root and its use.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disk use and clean-up of the whole state root.
    #[command(subcommand)]
    System(SystemCommand),
    /// Print a shell completion script: `corral completion bash > /etc/bash_completion.d/corral`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write man pages for every command into a directory (`corral.1`, `corral-run.1` ...).
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

/// `corral system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// What images, containers and volumes take on disk, and how much is reclaimable.
    Df {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove stopped containers, networks no container uses, and images no container uses
    /// that have no name (with -a: every image no container uses); with --volumes, volumes no
    /// container mounts.
    Prune {
        /// Every unused image, not only unnamed ones.
        #[arg(short, long)]
        all: bool,
        /// Volumes too.
        #[arg(long)]
        volumes: bool,
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
    },
}

/// `corral serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address and port to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Where to write the kubeconfig (default: `$CORRAL_ROOT/kubeconfig`).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The corral network pods join.
    #[arg(long, default_value = "corral", value_name = "NETWORK")]
    pub network: String,
    /// How the scheduler chooses among nodes that fit: `binpack` (the fullest) or `spread`.
    #[arg(long, default_value = "binpack", value_parser = ["binpack", "spread"])]
    pub scheduler_score: String,
    /// Allocatable CPU is multiplied by this when pods are placed.
    #[arg(long, default_value_t = 1.0, value_name = "RATIO")]
    pub cpu_overcommit: f64,
    /// Allocatable memory is multiplied by this when pods are placed.
    #[arg(long, default_value_t = 1.0, value_name = "RATIO")]
    pub memory_overcommit: f64,
    /// Run in the background (the log goes to `$CORRAL_ROOT/serve/serve.log`); returns once
    /// the API answers.
    #[arg(short = 'd', long)]
    pub detach: bool,
}
