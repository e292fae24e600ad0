//! Container verbs: `run`, `create`, `start`, `ps`, `exec`, `logs`, `stop` ... — at the top
//! level as docker has them, and under `corral container` too.

use clap::{Args, Subcommand};

use super::RunArgs;

/// The container verbs.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container from an image.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start containers: created ones, or exited ones again with their configuration.
    Start {
        /// Attach to its output and exit with its code (one container).
        #[arg(short, long)]
        attach: bool,
        /// Start every container and VM that was running with a restart policy when the host
        /// went down (what a boot-time unit runs: corral has no daemon to do it).
        #[arg(long, conflicts_with_all = ["attach", "containers"])]
        all_restartable: bool,
        /// Containers (names or ids).
        #[arg(required_unless_present = "all_restartable")]
        containers: Vec<String>,
    },
    /// Stop containers and start them again.
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename {
        /// The container.
        container: String,
        /// Its new name.
        name: String,
    },
    /// Make an image of a container's changes over its image (a new layer).
    Commit {
        /// The author.
        #[arg(short, long)]
        author: Option<String>,
        /// A comment for the history.
        #[arg(short, long)]
        message: Option<String>,
        /// A Dockerfile-style change to the config: CMD, ENTRYPOINT, ENV, LABEL, WORKDIR,
        /// USER, EXPOSE, VOLUME, STOPSIGNAL (repeatable).
        #[arg(short, long, value_name = "INSTRUCTION")]
        change: Vec<String>,
        /// Freeze a running container while its files are read (default true).
        #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
        pause: bool,
        /// The container.
        container: String,
        /// The new image's name, `NAME[:TAG]` (without: a dangling image, shown by id).
        image: Option<String>,
    },
    /// Change the limits of containers (applied at once to running ones) or their restart
    /// policy.
    Update {
        /// Memory limit (e.g. 64m).
        #[arg(short, long)]
        memory: Option<String>,
        /// CPUs (e.g. 0.5).
        #[arg(long)]
        cpus: Option<f64>,
        /// Relative CPU weight.
        #[arg(short = 'c', long)]
        cpu_shares: Option<u64>,
        /// Allowed CPUs (0-1, 0,2).
        #[arg(long)]
        cpuset_cpus: Option<String>,
        /// Allowed memory nodes (0, 0-1).
        #[arg(long)]
        cpuset_mems: Option<String>,
        /// Maximum number of processes.
        #[arg(long)]
        pids_limit: Option<i64>,
        /// Restart policy.
        #[arg(long)]
        restart: Option<String>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Follow a running container's output (and forward signals to it) until it exits; exits
    /// with its code.
    Attach {
        /// Do not forward signals.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = true)]
        sig_proxy: bool,
        /// Accepted for docker's scripts (stdin is the container's only with run -i).
        #[arg(long)]
        no_stdin: bool,
        /// The container.
        container: String,
    },
    /// List what a container changed in its filesystem: A added, C changed, D deleted.
    Diff {
        /// The container.
        container: String,
    },
    /// List a container's published ports: `80/tcp -> 0.0.0.0:8080`.
    Port {
        /// The container.
        container: String,
        /// Only this port: `80` or `80/tcp`.
        port: Option<String>,
    },
    /// List containers.
    #[command(visible_alias = "ls", alias = "list")]
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
        /// Only those that match: id=, name=, label=K[=V], status=, exited=CODE, ancestor=IMAGE,
        /// network=, volume=, before=C, since=C (repeatable).
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// The last N containers made (of any state).
        #[arg(short = 'n', long)]
        last: Option<usize>,
        /// The last container made (of any state).
        #[arg(short = 'l', long)]
        latest: bool,
        /// Full ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// A Go template for each row (`{{.ID}} {{.Names}} {{.Status}}`; fields ID, Image,
        /// Command, CreatedAt, RunningFor, Ports, Status, State, Names, Labels, Networks,
        /// Mounts); `table TEMPLATE` adds a header; `json` prints JSON.
        #[arg(long)]
        format: Option<String>,
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
        /// Read environment variables from a file (K=V lines).
        #[arg(long)]
        env_file: Vec<std::path::PathBuf>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User: `USER[:GROUP]`, names (the container's /etc/passwd) or numbers.
        #[arg(short, long)]
        user: Option<String>,
        /// Give the command every capability and no system call filter.
        #[arg(long)]
        privileged: bool,
        /// With -it, the keys that leave the command running and return (docker's form:
        /// `ctrl-p,ctrl-q`, the default; `ctrl-X` or single characters; "" for none).
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// The container.
        container: String,
        /// The command and its arguments.
        #[arg(required = true)]
        command: Vec<String>,
    },
    /// Copy files between a container (running or stopped) and the host: `cp CONTAINER:PATH HOSTPATH` or
    /// `cp HOSTPATH CONTAINER:PATH`; `-` for HOSTPATH is a tar stream on standard output
    /// (`cp C:/etc -`) or input (`cp - C:/dir`).
    Cp {
        /// Source.
        source: String,
        /// Destination.
        destination: String,
    },
    /// Write a container's root filesystem (the image's files with its changes; volumes and
    /// other mounts left out) as a tar archive, to standard output or a file; `corral image
    /// import` makes an image of it again.
    Export {
        /// Write to this file instead of standard output (made whole or not at all).
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// The container (running or stopped).
        container: String,
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
    /// Show containers' CPU %, memory, network and block I/O and process counts, refreshed
    /// every second (CPU % is of one CPU: two busy CPUs show 200%).
    Stats {
        /// Stopped containers too (with zeros).
        #[arg(short, long)]
        all: bool,
        /// One reading (CPU over half a second) instead of a refreshing display.
        #[arg(long)]
        no_stream: bool,
        /// Full container ids.
        #[arg(long)]
        no_trunc: bool,
        /// A Go template over ID, Name, Container, CPUPerc, MemUsage, MemPerc, NetIO,
        /// BlockIO, PIDs (`table ...` adds a header); `json`: one object per line.
        #[arg(long)]
        format: Option<String>,
        /// corral's JSON, with numbers (implies --no-stream).
        #[arg(long)]
        json: bool,
        /// Containers (default: every running one, new ones joining as they start).
        containers: Vec<String>,
    },
    /// Show the processes of a container.
    Top {
        /// The container.
        container: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Options for the host's ps(1), as docker's `top C aux`: its rows of the container's
        /// processes are printed, with its header.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PS_OPTIONS"
        )]
        ps_options: Vec<String>,
    },
    /// Show a container's output.
    Logs {
        /// Keep following the output until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (`all` for every line).
        #[arg(short = 'n', long, value_parser = parse_tail)]
        tail: Option<TailLines>,
        /// Only lines since this time: RFC 3339, Unix seconds, or a duration before now (10m).
        #[arg(long)]
        since: Option<String>,
        /// Only lines before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// The container.
        container: String,
    },
    /// Stop containers: their stop signal (the image's STOPSIGNAL, else SIGTERM), then
    /// SIGKILL after a grace period.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// Every running container.
        #[arg(short, long)]
        all: bool,
        /// Containers.
        #[arg(required_unless_present = "all")]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Every running container.
        #[arg(short, long)]
        all: bool,
        /// Containers.
        #[arg(required_unless_present = "all")]
        containers: Vec<String>,
    },
    /// Remove containers.
    #[command(alias = "remove")]
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Remove their anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        /// Every container.
        #[arg(short, long)]
        all: bool,
        /// Only those that match (the keys of `ps --filter`).
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Containers.
        #[arg(required_unless_present_any = ["all", "filter"])]
        containers: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes (or for another condition).
    Wait {
        /// What to wait for: stopped (the default: exited, printing the code), running,
        /// healthy, unhealthy.
        #[arg(long, default_value = "stopped", value_parser = ["stopped", "exited", "running", "healthy", "unhealthy"])]
        condition: String,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a container's health check now.
    #[command(subcommand)]
    Healthcheck(HealthcheckCommand),
    /// Show containers (or images) as JSON, in docker's shape (an array).
    Inspect {
        /// corral's own JSON shape instead of docker's.
        #[arg(long)]
        json: bool,
        /// A Go template over each object: `{{.State.Status}}`, `{{json .Config}}`,
        /// `{{range .Mounts}}{{.Source}}{{end}}`, `{{index .Config.Labels "k"}}`.
        #[arg(short, long)]
        format: Option<String>,
        /// Only look for this kind: container or image.
        #[arg(long = "type", value_parser = ["container", "image"])]
        kind: Option<String>,
        /// Containers or images.
        #[arg(required = true)]
        targets: Vec<String>,
    },
}

/// `healthcheck ...`.
#[derive(Debug, Subcommand)]
pub enum HealthcheckCommand {
    /// Run the check once; exit 0 if it passed, 1 if not (and record it as the checker does).
    Run {
        /// The container.
        container: String,
    },
}

/// `--tail`: a number of lines, or every line (`None`).
#[derive(Debug, Clone, Copy)]
pub struct TailLines(pub Option<usize>);

/// `--tail`: a number, or `all`.
fn parse_tail(s: &str) -> Result<TailLines, String> {
    if s == "all" || s == "-1" {
        return Ok(TailLines(None));
    }
    s.parse()
        .map(|n| TailLines(Some(n)))
        .map_err(|_| format!("{s:?}: give a number of lines or all"))
}

/// Arguments of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events that match: type=container|vm|image|network|volume, event=ACTION,
    /// container=NAME|ID, image=, label=K[=V], network=, volume=, vm= (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show events since this time (RFC 3339, Unix seconds, or a duration before now: 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (same forms); without it, events are followed until interrupted.
    #[arg(long)]
    pub until: Option<String>,
    /// `json`: one JSON object per line.
    #[arg(long)]
    pub format: Option<String>,
}
