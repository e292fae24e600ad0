//! The command line: every verb and flag, with the help text that teaches them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Create and start a container from an image.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start a created container.
    Start {
        /// Attach to its output and exit with its code.
        #[arg(short, long)]
        attach: bool,
        /// The container (name or id).
        container: String,
    },
    /// List containers.
    Ps {
        /// All containers, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a running container.
    #[command(trailing_var_arg = true)]
    Exec {
        /// Keep standard input open.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal (with -i: an interactive session).
        #[arg(short, long)]
        tty: bool,
        /// Do not wait for the command.
        #[arg(short, long)]
        detach: bool,
        /// Set an environment variable.
        #[arg(short, long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User: `UID[:GID]`.
        #[arg(short, long)]
        user: Option<String>,
        /// The container.
        container: String,
        /// The command and its arguments.
        #[arg(required = true)]
        command: Vec<String>,
    },
    /// Copy files between a running container and the host: `cp CONTAINER:PATH HOSTPATH` or
    /// `cp HOSTPATH CONTAINER:PATH`.
    Cp {
        /// Source.
        source: String,
        /// Destination.
        destination: String,
    },
    /// Freeze every process of containers.
    Pause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers' memory, CPU and process counts (from their cgroups).
    Stats {
        /// One snapshot instead of a refreshing display.
        #[arg(long)]
        no_stream: bool,
        /// Print JSON (implies --no-stream).
        #[arg(long)]
        json: bool,
        /// Containers (default: all running).
        containers: Vec<String>,
    },
    /// Show the processes of a container.
    Top {
        /// The container.
        container: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a container's output.
    Logs {
        /// Keep following the output until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// The container.
        container: String,
    },
    /// Stop containers: SIGTERM, then SIGKILL after a grace period.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container (or image) as JSON.
    Inspect {
        /// Containers or images.
        #[arg(required = true)]
        targets: Vec<String>,
    },
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
}

/// Arguments of `run` and `create`: docker's names.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// `container` (namespaces and cgroups on the host's kernel) or `vm` (a VM of its own,
    /// with its own kernel: see `corral vm run --help`).
    #[arg(long, default_value = "container", value_parser = ["container", "vm"])]
    pub isolation: String,
    /// Name the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (K=V, or K to take it from here).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines).
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User to run as: `UID[:GID]`.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Hostname (default: the short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (with -i: an interactive session).
    #[arg(short, long)]
    pub tty: bool,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount a host directory or a named volume (made on first use): `HOSTDIR|NAME:DST[:ro]`.
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs at DST.
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPUs the container may use (e.g. 0.5, 2).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (default 1024).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs allowed (0-1, 0,2).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Networks to join: a corral network's name (repeat or separate with commas for
    /// several; `eth0` is on the first), `none` (loopback only) or `host` (the host's). Default:
    /// the network `corral` (10.120.0.0/16 with NAT, made on first use), or $CORRAL_DEFAULT_NETWORK.
    #[arg(long, alias = "net", value_name = "NAME")]
    pub network: Vec<String>,
    /// Another DNS name of the container on its networks (repeatable).
    #[arg(long, value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// Publish a port: `[IP:][HOSTPORT:]PORT[/tcp|udp]`, ranges as `8000-8001:80-81`; without
    /// HOSTPORT a free port is chosen (see `corral inspect`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Restart policy: no, `on-failure[:N]`, always (the monitor restarts the process with
    /// back-off; `stop` and `kill` end it for good).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Security options: no-new-privileges; seccomp=unconfined (no system call filter) or
    /// seccomp=FILE (a profile in docker's JSON format).
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Add a capability (NET_ADMIN or CAP_NET_ADMIN, any case; ALL for every one).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (ALL: keep only those added).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability, every host device (in /dev and allowed), no masked or read-only
    /// /proc paths, /sys read-write, no system call filter.
    #[arg(long)]
    pub privileged: bool,
    /// Give the container a host device: `HOSTPATH[:PATH][:PERMS]`, PERMS a subset of `rwm`
    /// (read, write, mknod; default all), e.g. `--device /dev/fuse` or
    /// `--device /dev/sdb:/dev/xvdb:r`.
    #[arg(long, value_name = "HOST[:PATH][:PERMS]")]
    pub device: Vec<String>,
    /// Allow devices by number in the devices cgroup, as docker writes it: `c 1:11 r`,
    /// `b 8:* rw` (`*` for any number, `a` for every device). The node itself must come from
    /// the image, `--device` or mknod.
    #[arg(long, value_name = "RULE")]
    pub device_cgroup_rule: Vec<String>,
    /// User namespace: `host` (the default: container root is host root), or `auto[:size=N]`
    /// (root and up to N ids, 65536 by default, mapped to a range of host ids no other
    /// container has; image layers are idmapped, not copied).
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Map container ids to host ids in a user namespace: `CONTAINER:HOST:SIZE` (repeat for
    /// more lines; the gid map is the same unless --gidmap is given).
    #[arg(long, value_name = "C:H:N")]
    pub uidmap: Vec<String>,
    /// Map container gids to host gids: `CONTAINER:HOST:SIZE` (with --uidmap).
    #[arg(long, value_name = "C:H:N")]
    pub gidmap: Vec<String>,
    /// Set a resource limit: nofile, nproc, core, memlock or stack (-1: unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// The image.
    pub image: String,
    /// The command and its arguments (default: the image's).
    pub command: Vec<String>,
}

/// `corral network ...`: docker's names.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Make a network: a bridge with its subnet, NAT to the outside unless --internal, and a
    /// DNS server that resolves its containers by name.
    Create {
        /// Subnet in CIDR form (default: the first free /24 of 10.121.0.0/16).
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's address (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// No way out: no NAT, no default route, no published ports.
        #[arg(long)]
        internal: bool,
        /// Bridge the network onto this host interface (Proxmox's vmbr0 style): its VMs and
        /// containers share the interface's LAN with other hosts' bridges, and a VM keeps its
        /// address when it migrates between them.
        #[arg(long, value_name = "IFACE")]
        parent: Option<String>,
        /// Allocate this host's addresses from this part of the subnet (hosts that share a
        /// LAN through --parent each take their own range).
        #[arg(long, value_name = "CIDR")]
        ip_range: Option<String>,
        /// The name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks and their endpoints as JSON.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks; one in use is refused unless -f, which disconnects its containers.
    #[command(alias = "remove")]
    Rm {
        /// Disconnect the containers first.
        #[arg(short, long)]
        force: bool,
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a running container to a network (its next interface, ethN).
    Connect {
        /// Another DNS name of the container on this network.
        #[arg(long)]
        alias: Vec<String>,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Remove every network without endpoints (but the default one).
    Prune {
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
    },
}

/// `corral volume ...`: docker's names.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (nothing happens if it exists). `run -v NAME:/path` also makes one.
    Create {
        /// The name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
        name: String,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes; one that a container (running or not) mounts is refused.
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on volumes that do not exist (a volume in use is still refused).
        #[arg(short, long)]
        force: bool,
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume that no container mounts.
    Prune {
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
    },
}

/// `corral image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a one-layer image from a root filesystem tarball (plain, .gz or .zst; - for stdin).
    Import(ImportArgs),
    /// Load images from a docker-archive or OCI-archive tarball (as `podman save` writes).
    Load(LoadArgs),
    /// Write an image as an OCI archive that podman, skopeo and docker load.
    Save(SaveArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show an image's manifest, config and layers as JSON.
    Inspect {
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Add a name to an image.
    Tag(TagArgs),
    /// Remove image names; content no longer named is deleted.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Delete every blob, unpacked layer and partial download that no image needs.
    Prune,
    /// Pull an image from a registry (same as `corral pull`).
    Pull(PullArgs),
    /// Push an image to a registry (same as `corral push`).
    Push(PushArgs),
}

/// Arguments of `image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The rootfs tarball, or - for standard input.
    pub file: PathBuf,
    /// The name to give the image, `NAME[:TAG]`.
    pub name: String,
}

/// Arguments of `image load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read (default: standard input).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print only the image ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `image save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The image to save.
    pub image: String,
    /// Where to write the archive (default: standard output, if it is not a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Arguments of `image ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print only image ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `image tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image, by name or id.
    pub source: String,
    /// The new name, `NAME[:TAG]`.
    pub target: String,
}

/// Arguments of `image rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Image names or ids.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove every name of an image given by id.
    #[arg(short, long)]
    pub force: bool,
}

/// Registry flags shared by pull and push.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Require HTTPS with a verified certificate. `--tls-verify=false` speaks plain HTTP to
    /// the registry (localhost and 127.0.0.0/8 registries always use plain HTTP).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Credentials file (default: ROOT/auth.json, written by `corral login`).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, `[REGISTRY[:PORT]/]REPOSITORY[:TAG|@DIGEST]`.
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Arguments of `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image.
    pub image: String,
    /// Where to push it (default: the image's own name).
    pub destination: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Arguments of `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry `host[:port]`.
    pub registry: String,
    /// User name.
    #[arg(short, long)]
    pub username: String,
    /// Password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// `corral vm ...`: virtual machines run by QEMU (KVM where the host has hardware
/// virtualization, QEMU's TCG otherwise), with corral's agent inside image VMs.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create and start a VM; without -d, wait for its main process (or its console) and
    /// exit with its code.
    ///
    /// Examples:
    ///   corral vm run --rm --image busybox -- echo hi
    ///   corral vm run -d --name web --image busybox --network corral -- httpd -f -p 80
    ///   corral vm run --boot-disk debian.qcow2 --cloud-init user-data.yaml --memory 1G
    Run(VmRunArgs),
    /// Create a VM without starting it.
    Create(VmRunArgs),
    /// Start a created or stopped VM.
    Start {
        /// Stay attached to the main process's output and exit with its code.
        #[arg(short, long)]
        attach: bool,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Stop VMs cleanly (the agent powers the guest off, or ACPI), then kill after a timeout.
    Stop {
        /// Seconds to wait for a clean power-off before killing.
        #[arg(short, long, default_value_t = 30)]
        time: u64,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Stop and start VMs.
    Restart {
        /// Seconds to wait for a clean power-off before killing.
        #[arg(short, long, default_value_t = 30)]
        time: u64,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// End VMs at once (QEMU quits; the guest gets no chance to sync).
    Kill {
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Remove VMs with their disks, logs and network endpoints.
    Rm {
        /// Kill running VMs first.
        #[arg(short, long)]
        force: bool,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// List VMs.
    #[command(alias = "ps", alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show VMs' configuration and state as JSON (with the guest's facts when it runs).
    Inspect {
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Run a command in a running VM through corral's agent.
    Exec {
        /// Keep stdin open and send it to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Run the command on a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Set an environment variable (K=V).
        #[arg(short, long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Working directory in the guest.
        #[arg(short, long)]
        workdir: Option<String>,
        /// UID[:GID] in the guest.
        #[arg(short, long)]
        user: Option<String>,
        /// The VM.
        vm: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Copy a file between the host and a running VM: `vm cp FILE VM:/path` or `vm cp VM:/path FILE`
    /// (`-` is stdin or stdout).
    Cp {
        /// From.
        source: String,
        /// To.
        destination: String,
    },
    /// Show a VM's main process output (`--console`: what its serial console printed).
    Logs {
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// The serial console's log instead of the main process's output.
        #[arg(long)]
        console: bool,
        /// The VM.
        vm: String,
    },
    /// Show VMs' usage: QEMU's CPU time and host memory (its cgroup), and the guest's own
    /// memory (from the agent) and balloon.
    Stats {
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        /// As JSON (once).
        #[arg(long)]
        json: bool,
        /// VM names or ids (default: every running VM).
        vms: Vec<String>,
    },
    /// Change a VM's memory or CPUs. A running VM's memory moves through its balloon (up to
    /// what it booted with); other changes apply at the next start.
    Set {
        /// Memory (e.g. 256M).
        #[arg(short, long)]
        memory: Option<String>,
        /// Virtual CPUs.
        #[arg(long)]
        cpus: Option<u32>,
        /// The VM.
        vm: String,
    },
    /// Move a running image VM to another corral host while it keeps running (disk and
    /// memory copied live, then a short pause). The other host runs `corral vm receive`.
    Migrate {
        /// The destination: the ADDR:PORT its `corral vm receive --listen` serves.
        #[arg(long)]
        to: String,
        /// Leave QEMU's migration settings at its defaults (for comparison).
        #[arg(long)]
        qemu_defaults: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
    /// Receive VMs migrated from other corral hosts (runs until stopped).
    Receive {
        /// ADDR:PORT to listen on.
        #[arg(long)]
        listen: String,
    },
    /// Snapshots of a VM's disk, or of the whole running machine with --memory.
    #[command(subcommand)]
    Snapshot(VmSnapshotCommand),
    /// Attach the terminal to a running VM's serial console (detach with Ctrl-]).
    Console {
        /// The VM.
        vm: String,
    },
    /// Write a stopped VM to one archive (zstd-compressed tar: its config, disks, kernel and
    /// initramfs), for `corral vm import` on another host.
    ///
    /// Examples:
    ///   corral vm export web -o web.vm.tar.zst
    ///   corral vm export web -o - | ssh other corral vm import -
    Export {
        /// The archive to write (`-`: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: String,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// Export a running VM with its memory: take a memory snapshot (`export-<time>`),
        /// stop the VM, and export it with its snapshots; on the other host `vm snapshot
        /// restore VM export-<time>` resumes it where it was.
        #[arg(long)]
        memory: bool,
        /// The VM (stopped, unless --memory).
        vm: String,
    },
    /// Make a new, stopped VM from an archive of `corral vm export` (with the snapshots
    /// that travelled in its disk).
    Import {
        /// The new VM's name (default: the exported VM's, unless taken here).
        #[arg(long)]
        name: Option<String>,
        /// Join this network instead of the exported VM's (`none`: no NIC).
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// The archive (`-`: standard input).
        file: String,
    },
    /// Turn a stopped image VM into a read-only template (the VM is gone afterwards); `vm
    /// template ls`, `vm template rm NAME`.
    ///
    /// Examples:
    ///   corral vm template web1 web-base
    ///   corral vm clone web-base web2 --start
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Template {
        /// ls or rm.
        #[command(subcommand)]
        cmd: Option<VmTemplateCommand>,
        /// The stopped VM.
        #[arg(required = true)]
        vm: Option<String>,
        /// The template's name (not `ls` or `rm`).
        #[arg(required = true)]
        name: Option<String>,
    },
    /// Make a new VM from a template or a stopped VM: its disk is a copy-on-write overlay,
    /// made in milliseconds whatever its size; it has its own name, addresses and machine id.
    Clone {
        /// Start the new VM.
        #[arg(long)]
        start: bool,
        /// Networks to join instead of the source's (repeatable; `none` for no NIC).
        #[arg(long)]
        network: Vec<String>,
        /// A template's name, or a stopped VM's name or id.
        source: String,
        /// The new VM's name (also its hostname).
        name: String,
    },
}

/// `corral vm template ls|rm`.
#[derive(Debug, Subcommand)]
pub enum VmTemplateCommand {
    /// List templates, with the VMs that use them.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove templates; refused while a VM or template uses one (they are named).
    Rm {
        /// Template names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Arguments of `vm run` and `vm create`.
#[derive(Debug, Args)]
pub struct VmRunArgs {
    /// Run in the background and print the VM's id.
    #[arg(short, long)]
    pub detach: bool,
    /// Name the VM (also the guest's hostname and DNS name).
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the VM when it stops.
    #[arg(long)]
    pub rm: bool,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory (e.g. 512M, 2G).
    #[arg(short, long, default_value = "512M")]
    pub memory: String,
    /// Size of the VM's writable disk for an image boot (e.g. 2G).
    #[arg(long, default_value = "2G")]
    pub disk: String,
    /// Boot this OCI image: corral's kernel and agent, the image as the root filesystem.
    #[arg(long, conflicts_with_all = ["boot_disk", "initrd", "cmdline"])]
    pub image: Option<String>,
    /// Boot a bootable raw or qcow2 disk image through the firmware.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernel", "initrd", "cmdline"])]
    pub boot_disk: Option<std::path::PathBuf>,
    /// Boot the disk through UEFI (OVMF) rather than the BIOS.
    #[arg(long, requires = "boot_disk")]
    pub uefi: bool,
    /// A guest kernel (with --image: instead of the one corral finds in /boot).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<std::path::PathBuf>,
    /// An initramfs for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<std::path::PathBuf>,
    /// The kernel command line for --kernel.
    #[arg(long, requires = "kernel")]
    pub cmdline: Option<String>,
    /// cloud-init user-data for a --boot-disk guest (delivered as a NoCloud seed).
    #[arg(long, value_name = "FILE", requires = "boot_disk")]
    pub cloud_init: Option<std::path::PathBuf>,
    /// kvm, tcg or auto (auto: KVM where the host has hardware virtualization).
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Networks to join, one NIC each (default: $CORRAL_DEFAULT_NETWORK or `corral`; `none`
    /// for no NIC).
    #[arg(long)]
    pub network: Vec<String>,
    /// An extra DNS name on the networks.
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// Publish a guest port on the host: [IP:][HOSTPORT:]PORT[/tcp|udp], ranges as
    /// 8000-8010:80-90 (on the first network).
    #[arg(short, long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Keep stdin open for the main process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the main process on a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable of the main process (K=V).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory of the main process.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// UID[:GID] of the main process.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Seconds to wait for the guest agent to answer after QEMU starts.
    #[arg(long, default_value_t = 90)]
    pub boot_timeout: u64,
    /// The command and its arguments, after `--` (default: the image's).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `corral vm snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum VmSnapshotCommand {
    /// Take a snapshot: the disk (crash-consistent; a running guest syncs first), or with
    /// --memory the whole running machine, so that a restore resumes its processes.
    Create {
        /// Include the running machine's memory, CPUs and devices.
        #[arg(long)]
        memory: bool,
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// List a VM's snapshots.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
    /// Restore a snapshot: a memory snapshot puts a running VM back where it was (a stopped
    /// one starts from it); a disk snapshot rolls a stopped VM's disk back.
    Restore {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// Delete a snapshot.
    Rm {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
}
