//! `corral compose`: docker compose's verbs and flags.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The flags every compose verb takes.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  corral compose up -d                     compose.yaml (or compose.yml, docker-compose.y[a]ml) here
  corral compose -f a.yaml -f b.yaml up -d files merged in order
  corral compose ps; corral compose logs -f web; corral compose exec db sh
  corral compose up -d                     after an edit: only changed services (and dependents) are recreated
  corral compose up -d --scale web=3; corral compose down -v
  corral compose config                    the resolved model: interpolated, merged, normalised")]
pub struct ComposeArgs {
    /// A compose file (repeatable: merged in order). Default: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml here or in a parent; or $COMPOSE_FILE.
    #[arg(short, long = "file", global = true)]
    pub file: Vec<PathBuf>,
    /// The project's name (default: $COMPOSE_PROJECT_NAME, the files' `name:`, the directory).
    #[arg(short, long = "project-name", global = true)]
    pub project_name: Option<String>,
    /// Variables for interpolation (default: .env beside the first file); repeatable.
    #[arg(long = "env-file", global = true)]
    pub env_file: Vec<PathBuf>,
    /// Enable a profile (repeatable; also $COMPOSE_PROFILES).
    #[arg(long, global = true)]
    pub profile: Vec<String>,
    /// The directory relative paths and file lookup start from.
    #[arg(long = "project-directory", global = true)]
    pub project_directory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

/// The compose verbs.
#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Create and start the services (only changed ones are recreated).
    Up {
        /// Return once started (without it: follow the logs; ^C stops the services).
        #[arg(short, long)]
        detach: bool,
        /// Wait until services are running, and healthy when they have a health check
        /// (implies -d).
        #[arg(long)]
        wait: bool,
        /// Seconds to wait (--wait, and service_healthy dependencies).
        #[arg(long = "wait-timeout", default_value_t = 120)]
        wait_timeout: u64,
        /// Recreate containers even if nothing changed.
        #[arg(long)]
        force_recreate: bool,
        /// Never recreate existing containers.
        #[arg(long)]
        no_recreate: bool,
        /// Do not start the services' dependencies.
        #[arg(long)]
        no_deps: bool,
        /// Remove containers of services no longer in the files.
        #[arg(long)]
        remove_orphans: bool,
        /// Replicas of a service: SERVICE=N (repeatable).
        #[arg(long)]
        scale: Vec<String>,
        /// Build images before starting.
        #[arg(long)]
        build: bool,
        /// Stop every container when one exits (implies following the logs, not -d).
        #[arg(long)]
        abort_on_container_exit: bool,
        /// Exit with this service's container's code (implies --abort-on-container-exit).
        #[arg(long)]
        exit_code_from: Option<String>,
        /// Only these services (and their dependencies).
        services: Vec<String>,
    },
    /// Stop and remove containers and networks (with -v, volumes too).
    Down {
        /// Remove the named volumes of the project and the containers' anonymous volumes.
        #[arg(short, long)]
        volumes: bool,
        /// Remove containers of services no longer in the files.
        #[arg(long)]
        remove_orphans: bool,
        /// Seconds each container has to stop before it is killed (default: its
        /// stop_grace_period, else 10).
        #[arg(short, long)]
        timeout: Option<u64>,
        /// Remove images too: `local` (built for services without an `image:` name) or `all`.
        #[arg(long, value_parser = ["local", "all"])]
        rmi: Option<String>,
    },
    /// List the project's containers.
    Ps {
        /// Stopped ones too.
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Only service names.
        #[arg(long)]
        services: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only these services.
        service: Vec<String>,
    },
    /// Show the services' output.
    Logs {
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each.
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        /// Show times.
        #[arg(short, long)]
        timestamps: bool,
        /// Without the `NAME |` prefix.
        #[arg(long)]
        no_log_prefix: bool,
        /// Only these services.
        services: Vec<String>,
    },
    /// Print the resolved model: interpolated, merged, normalised.
    Config {
        /// yaml or json.
        #[arg(long, default_value = "yaml")]
        format: String,
        /// Only the service names.
        #[arg(long)]
        services: bool,
        /// Only the volume names.
        #[arg(long)]
        volumes: bool,
        /// Only check: print nothing.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Stop services.
    Stop {
        /// Seconds each container has to stop before it is killed.
        #[arg(short, long)]
        timeout: Option<u64>,
        /// Only these services.
        services: Vec<String>,
    },
    /// Start stopped services.
    Start {
        /// Only these services.
        services: Vec<String>,
    },
    /// Restart services (and the services that depend on them with `restart: true`).
    Restart {
        /// Seconds each container has to stop before it is killed.
        #[arg(short, long)]
        timeout: Option<u64>,
        /// Only these services.
        services: Vec<String>,
    },
    /// Send a signal to services.
    Kill {
        /// The signal.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Only these services.
        services: Vec<String>,
    },
    /// Remove stopped service containers.
    Rm {
        /// Stop them first.
        #[arg(short, long)]
        stop: bool,
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
        /// Remove the containers' anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        /// Only these services.
        services: Vec<String>,
    },
    /// Pause services.
    Pause {
        /// Only these services.
        services: Vec<String>,
    },
    /// Unpause services.
    Unpause {
        /// Only these services.
        services: Vec<String>,
    },
    /// Run a command in a running service container.
    Exec {
        /// No terminal (-T; the default when stdin is not a terminal).
        #[arg(short = 'T', long = "no-tty")]
        no_tty: bool,
        /// Detach.
        #[arg(short, long)]
        detach: bool,
        /// Environment variable `K=V` (repeatable).
        #[arg(short, long)]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User.
        #[arg(short, long)]
        user: Option<String>,
        /// Which replica.
        #[arg(long, default_value_t = 1)]
        index: u32,
        /// The service.
        service: String,
        /// The command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Build the services' images (those with `build:`).
    Build {
        /// Run every step again.
        #[arg(long)]
        no_cache: bool,
        /// Only these services.
        services: Vec<String>,
    },
    /// Run a one-off command in a new container of a service (its dependencies started).
    Run {
        /// Remove the container when it exits.
        #[arg(long)]
        rm: bool,
        /// Run in the background and print the container's id.
        #[arg(short, long)]
        detach: bool,
        /// No terminal (-T; the default when stdin is not a terminal).
        #[arg(short = 'T', long = "no-tty")]
        no_tty: bool,
        /// Environment variable `K=V` (repeatable).
        #[arg(short, long)]
        env: Vec<String>,
        /// The container's name.
        #[arg(long)]
        name: Option<String>,
        /// Do not start the service's dependencies.
        #[arg(long)]
        no_deps: bool,
        /// Publish the service's ports (one-off containers publish none by default).
        #[arg(long)]
        service_ports: bool,
        /// Working directory.
        #[arg(short, long)]
        workdir: Option<String>,
        /// User.
        #[arg(short, long)]
        user: Option<String>,
        /// Replace the image's entrypoint.
        #[arg(long)]
        entrypoint: Option<String>,
        /// The service.
        service: String,
        /// The command (default: the service's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Pull the services' images.
    Pull {
        /// Only these services.
        services: Vec<String>,
    },
    /// Print the host address a service's port is published on.
    Port {
        /// The service.
        service: String,
        /// Its port (`80`, `53/udp`).
        port: String,
        /// Which replica.
        #[arg(long, default_value_t = 1)]
        index: u32,
    },
    /// Show the processes of the services' running containers.
    Top {
        /// Only these services.
        service: Vec<String>,
    },
    /// List the images the services' containers use.
    Images {
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only these services.
        service: Vec<String>,
    },
    /// List the compose projects that have containers here.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Stopped projects too.
        #[arg(short, long)]
        all: bool,
    },
}
