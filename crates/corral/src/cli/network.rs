//! `network ...` and `volume ...`.

use clap::Subcommand;

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
        /// Set a label: `KEY=VALUE` (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        label: Vec<String>,
        /// A driver option (repeatable): `mtu=N` (or docker's
        /// `com.docker.network.driver.mtu=N`): the MTU of the bridge and of its containers'
        /// interfaces; `com.docker.network.bridge.name=NAME`: the bridge's name on the host
        /// (one no device has yet).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opt: Vec<String>,
        /// No DNS server on this network: its containers' names do not resolve, and their
        /// /etc/resolv.conf lists the host's resolvers (podman's --disable-dns).
        #[arg(long)]
        disable_dns: bool,
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
        /// Only those that match: name=, id=, label=K[=V] (repeatable).
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// A Go template per network (`{{.Name}} {{.Subnet}}`; fields Name, ID, Subnet,
        /// Gateway, Driver, Internal, Labels, Containers); `table` adds a header.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show networks and their endpoints as JSON.
    Inspect {
        /// Print each through a Go template of docker's fields (`{{.Name}}`, `{{.Id}}`,
        /// `{{.Driver}}`, `{{range .IPAM.Config}}{{.Subnet}}{{end}}`, `{{.Internal}}`,
        /// `{{.Labels}}`, `{{json .Containers}}`).
        #[arg(short, long, value_name = "TEMPLATE")]
        format: Option<String>,
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
        /// The name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; without one, a random id.
        name: Option<String>,
        /// Set a label: `KEY=VALUE` (repeatable).
        #[arg(short = 'l', long, value_name = "KEY=VALUE")]
        label: Vec<String>,
        /// A driver option of the local driver, as `mount -t TYPE DEVICE -o O` takes them:
        /// `type=tmpfs -o device=tmpfs -o o=size=100m,uid=1000`, `type=nfs -o device=:/export
        /// -o o=addr=10.0.0.2`, `type=none -o device=/srv/dir -o o=bind`. Mounted at once (bad
        /// options fail here) and again after a reboot, until `volume rm`.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opt: Vec<String>,
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
        /// Print each through a Go template of docker's fields (`{{.Name}}`,
        /// `{{.Mountpoint}}`, `{{.Labels}}`, `{{json .}}`).
        #[arg(short, long, value_name = "TEMPLATE")]
        format: Option<String>,
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
