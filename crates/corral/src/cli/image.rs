//! `image ...`, `pull`, `push`, `login`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
    /// Show how an image was made: its history, newest first, with each layer's size.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Full commands.
        #[arg(long)]
        no_trunc: bool,
        /// The image.
        image: String,
    },
    /// Remove image names; content no longer named is deleted.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Delete every blob, unpacked layer and partial download that no image (and no
    /// container) needs.
    Prune {
        /// Accepted for docker's scripts: corral never asks.
        #[arg(short, long)]
        force: bool,
    },
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
    /// Also unnamed (dangling) images (they are always listed here: accepted for docker).
    #[arg(short, long)]
    pub all: bool,
    /// Show the manifest digest.
    #[arg(long)]
    pub digests: bool,
    /// Only those that match: reference=PATTERN (`*` wildcards), dangling=true|false,
    /// label=K[=V], before=IMAGE, since=IMAGE (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// A Go template per row (`{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}`; also Digest,
    /// CreatedAt, CreatedSince); `table TEMPLATE` adds a header; `json` prints JSON.
    #[arg(long)]
    pub format: Option<String>,
    /// Only this repository (`busybox`, `localhost:5000/app`).
    pub repository: Option<String>,
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
