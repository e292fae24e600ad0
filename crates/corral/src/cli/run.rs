//! `run` and `create`: docker's flags.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `run` and `create`: docker's names.
#[derive(Debug, Args)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (`-h` sets the hostname, as docker's does).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run in the background and print the container id.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub detach: bool,
    /// `container` (namespaces and cgroups on the host's kernel) or `vm` (a VM of its own,
    /// with its own kernel: see `corral vm run --help`).
    #[arg(long, default_value = "container", value_parser = ["container", "vm"])]
    pub isolation: String,
    /// Show only these streams while attached: stdout, stderr, stdin (repeatable; the log
    /// keeps both output streams). Not with -d.
    #[arg(short = 'a', long = "attach", value_name = "STREAM")]
    pub attach: Vec<String>,
    /// Name the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container (and its anonymous volumes) when it exits.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
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
    /// User to run as: `USER[:GROUP]`, names (from the image's /etc/passwd and /etc/group)
    /// or numbers.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Another group for the process, a name or a number (repeatable).
    #[arg(long, value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Hostname (default: the short id).
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Keep standard input open.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub interactive: bool,
    /// Give the container a terminal (with -i: an interactive session); TERM=xterm is set.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub tty: bool,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount a host directory (absolute or ./relative), a named volume (made on first use),
    /// or an anonymous volume (`-v /data`): `[SRC:]DST[:OPTS]`, OPTS from ro, rw, z, Z, nocopy.
    #[arg(short, long = "volume", value_name = "[SRC:]DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Mount docker's long form: `type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]`.
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a tmpfs: `DST[:OPTS]`, OPTS such as size=10m,mode=1777,noexec.
    #[arg(long, value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub read_only: bool,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPUs the container may use (e.g. 0.5, 2).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (default 1024).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CPUs allowed (0-1, 0,2).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed (0, 0-1: NUMA nodes, see /sys/devices/system/node/online).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Networks to join: a corral network's name (repeat or separate with commas for
    /// several; `eth0` is on the first), `none` (loopback only), `host` (the host's) or
    /// `container:NAME` (another running container's: its address, ports and hostname). Default:
    /// the network `corral` (10.120.0.0/16 with NAT, made on first use), or $CORRAL_DEFAULT_NETWORK.
    #[arg(long, alias = "net", value_name = "NAME")]
    pub network: Vec<String>,
    /// Another DNS name of the container on its networks (repeatable).
    #[arg(long, value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// A fixed IPv4 address on the (first) network, inside its subnet.
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// A fixed MAC address on the (first) network (default: derived from the address).
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Publish a port: `[IP:][HOSTPORT:]PORT[/tcp|udp]`, ranges as `8000-8001:80-81`; without
    /// HOSTPORT a free port is chosen (see `corral inspect`).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    #[arg(short = 'P', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub publish_all: bool,
    /// Restart policy: no, `on-failure[:N]`, always, unless-stopped (the monitor restarts the
    /// process with back-off; `stop` and `kill` end it for good).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Set a label: `KEY=VALUE` (repeatable).
    #[arg(short = 'l', long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file (`KEY=VALUE` lines).
    #[arg(long, value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// When to pull the image: missing (the default), always, never, newer.
    #[arg(long, default_value = "missing", value_name = "POLICY")]
    pub pull: String,
    /// The platform: only linux/amd64 runs here.
    #[arg(long)]
    pub platform: Option<String>,
    /// The signal `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Forward the signals corral receives (INT, TERM, HUP, QUIT, USR1, USR2) to the container
    /// while attached (default true; with -t the terminal delivers them).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
    pub sig_proxy: bool,
    /// The keys that detach your terminal from `run -it`, leaving the container running:
    /// `ctrl-p,ctrl-q` by default; a key is one character or `ctrl-X`; empty: none.
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Write the container's id to this file (it must not exist).
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// A health check command, run with /bin/sh -c in the container (over the image's
    /// HEALTHCHECK); exit 0 is healthy.
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between checks (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<humantime::Duration>,
    /// A check running longer fails (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<humantime::Duration>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Failures in this first span do not count (default 0s).
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<humantime::Duration>,
    /// No health check, whatever the image says.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Set a kernel parameter of the container's own namespaces: `net.ipv4.ip_forward=1`,
    /// `kernel.shmmax=...` (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*).
    #[arg(long, value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// Add an /etc/hosts line: `NAME:IP` (`NAME:host-gateway` for the network's gateway).
    #[arg(long, value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// A DNS server instead of the network's (repeatable).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// A DNS search domain (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolv.conf option such as ndots:2 (repeatable).
    #[arg(long, value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// CFS period in microseconds (with --cpu-quota).
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds per period (-1: none).
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// The OOM killer's preference for the container's processes (-1000 to 1000).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// Memory plus swap (a size at least -m), or -1 for unlimited swap. Default with -m: no
    /// swap.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// A soft limit the kernel reclaims down to under memory pressure (below -m).
    #[arg(long, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// How readily the container's pages are swapped, 0 to 100 (cgroup v1).
    #[arg(long, value_name = "N")]
    pub memory_swappiness: Option<u64>,
    /// At the memory limit, pause the container's processes instead of killing one (cgroup
    /// v1; needs -m).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub oom_kill_disable: bool,
    /// Relative block I/O weight, 10 to 1000 (needs the CFQ or BFQ I/O scheduler).
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// Limit reads from a device: `PATH:RATE` (bytes per second, 1mb ...).
    #[arg(long, value_name = "PATH:RATE")]
    pub device_read_bps: Vec<String>,
    /// Limit writes to a device: `PATH:RATE` (bytes per second).
    #[arg(long, value_name = "PATH:RATE")]
    pub device_write_bps: Vec<String>,
    /// Limit read operations on a device: `PATH:N` per second.
    #[arg(long, value_name = "PATH:N")]
    pub device_read_iops: Vec<String>,
    /// Limit write operations on a device: `PATH:N` per second.
    #[arg(long, value_name = "PATH:N")]
    pub device_write_iops: Vec<String>,
    /// Size of /dev/shm (default 64m).
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Count a port as exposed, as the image's EXPOSE does (for -P).
    #[arg(long, value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Where the output goes: json-file (the default; `corral logs` reads it), none, or
    /// journald (the systemd journal: `journalctl CONTAINER_NAME=NAME`).
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// A log driver option (repeatable): json-file's `max-size=10m` (rotate at that size)
    /// and `max-file=3` (files kept in all); journald's `tag=NAME`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Run an init as PID 1 (corral's static one, bound at /dev/init) that passes signals on
    /// to the command and reaps the zombies its children leave, as docker's --init does.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    pub init: bool,
    /// Remove a container that has this --name first (podman's --replace).
    #[arg(long)]
    pub replace: bool,
    /// IPC namespace: private (default), shareable (the same here), host, or
    /// `container:NAME` (another container's: shared memory and semaphores in common).
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// UTS namespace (hostname): private (default) or host.
    #[arg(long, value_name = "MODE", value_parser = ["private", "host"])]
    pub uts: Option<String>,
    /// PID namespace: private (default: the command is PID 1 and sees only its own), host
    /// (it sees, and can signal, every process of the host) or `container:NAME` (another
    /// running container's: each sees and can signal the other's processes).
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// cgroup namespace: private (default: /proc/self/cgroup shows /) or host (the host's
    /// cgroup paths).
    #[arg(long, value_name = "MODE", value_parser = ["private", "host"])]
    pub cgroupns: Option<String>,
    /// Run in this pod (`corral pod create`): its network, IPC and hostname.
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// Pass every variable of corral's own environment to the container.
    #[arg(long)]
    pub env_host: bool,
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
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
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
    /// Set a resource limit: `NAME=SOFT[:HARD]`, e.g. nofile=1024:2048 (-1: unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// The image.
    pub image: String,
    /// The command and its arguments (default: the image's).
    pub command: Vec<String>,
}
