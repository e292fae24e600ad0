//! `corral build` and `corral builder`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `corral build`: docker's and podman's flags.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  corral build -t app:1 .                                 Dockerfile (or Containerfile) in the context
  corral build -t app:1 -f build/Containerfile --target runtime --build-arg V=2 .
  corral build --no-cache --pull -t app:1 .               every step again, base images pulled again
  corral build -t app:1 --secret id=token,src=$HOME/.token .   for RUN --mount=type=secret,id=token
  corral build -q . > id                                  print only the image id
  corral build -f - . < Dockerfile                        the Dockerfile from standard input

Each step is looked up in the build cache first (marked CACHED): a COPY hits when its sources'
content, modes and owners are unchanged (touching a file does not matter); a RUN when the image
below it and the build arguments it sees are unchanged. RUN steps run in corral containers, on
the host's network unless --network says otherwise. Independent stages build in parallel; stages
the target does not need are not built. `corral builder prune` empties the cache.")]
pub struct BuildArgs {
    /// The build context: a directory whose files COPY and ADD can read.
    pub context: PathBuf,
    /// Name the result (repeatable): `app:1`, `registry:5000/app`.
    #[arg(short, long = "tag")]
    pub tag: Vec<String>,
    /// The Dockerfile (default: Dockerfile, else Containerfile, in the context; `-` reads it
    /// from standard input).
    #[arg(short, long = "file")]
    pub file: Option<PathBuf>,
    /// A build argument `NAME=VALUE` (or `NAME` to take it from the environment); repeatable.
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Build this stage (by its `AS` name) and what it needs, and stop there.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, using no cached result.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull the base images again, even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// A label `KEY=VALUE` on the result; repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// The network of RUN steps: `host` (default), `none`, or a corral network.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` (or `id=ID,env=VAR`); repeatable.
    #[arg(long)]
    pub secret: Vec<String>,
    /// Print only the image id: no progress, no step output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image id to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// The platform: linux/amd64 only.
    #[arg(long)]
    pub platform: Option<String>,
    /// Where RUN steps run: `container` (default), or `vm`: each in a VM of its own, with its
    /// own kernel (for builds you do not trust; no RUN --mount, network none unless --network
    /// names a corral network).
    #[arg(long, default_value = "container")]
    pub isolation: String,
    /// Also write the image as an archive: `type=oci,dest=FILE` or `type=docker,dest=FILE`.
    #[arg(short, long)]
    pub output: Option<String>,
    /// Print the result as JSON (id, tags, steps run and cached).
    #[arg(long)]
    pub json: bool,
}

/// `corral builder ...`.
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Empty the build cache (and delete the layers only it kept).
    Prune {
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
        /// Accepted for docker's scripts: the whole cache goes either way.
        #[arg(short, long)]
        all: bool,
    },
}
