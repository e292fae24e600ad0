//! `RUN`: the command runs in a corral container started through the engine, on an overlay of
//! the stage's layers (nothing is copied), and the step's layer is the container's upper
//! directory as a diff, with whiteouts for what it deleted.
//!
//! `--mount`: `type=cache` (a directory kept between builds under the state root, per `id`
//! or target), `type=secret` (a `--secret` file, read-only, at `/run/secrets/ID` or
//! `target`), `type=tmpfs`, and `type=bind` from the build context or, with `from=`, from a
//! stage or image (its layers as a read-only overlay, mounted for the step and unmounted after
//! it). Mount points the step had to make are taken out of its layer again, so a secret leaves
//! no trace.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use corral_engine::containers::{Attach, PullOptions};
use corral_engine::spec::{ContainerSpec, Mount, MountSource, Networking, PullPolicy};
use corral_engine::{Engine, Started};
use corral_image::{Digest, Store};
use sha2::{Digest as _, Sha256};

use crate::copy::canonical;
use crate::layers::View;
use crate::BuildError;

/// A `RUN` to do.
pub struct RunSpec<'a> {
    /// The stored image of the stage so far.
    pub image: &'a Digest,
    /// The process's arguments.
    pub args: Vec<String>,
    /// More environment (the build arguments in scope), `K=V`.
    pub env: Vec<String>,
    /// `host`, `none` or a corral network (`--network`).
    pub network: &'a str,
    /// The `--mount` flags' values.
    pub mounts: Vec<String>,
    /// `--secret` files by id.
    pub secrets: &'a BTreeMap<String, PathBuf>,
    /// The layers (top first) of the stages and images that `from=` names.
    pub from_layers: &'a BTreeMap<String, Vec<PathBuf>>,
    /// The build's stop switch: the step's container is killed when it is thrown.
    pub cancel: &'a crate::Cancel,
    /// The build context (for `type=bind`).
    pub context: &'a Path,
    /// Show the command's output.
    pub show_output: bool,
    /// The stage's layers, for finding which mount points the step makes.
    pub view: &'a View,
}

/// What a finished `RUN` left.
pub struct RunOutput {
    /// The layer's diff id.
    pub diff_id: Digest,
    /// Its size.
    pub size: u64,
}

fn opts(raw: &str) -> BTreeMap<String, String> {
    raw.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (kv.trim().to_owned(), "true".into()),
        })
        .collect()
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "true" || v == "1" || v.is_empty())
}

/// A stage's or image's layers mounted read-only (an overlay of them over an empty
/// directory, so that one layer or none mounts too) for one step; unmounted on drop.
struct StageMount {
    dir: PathBuf,
}

impl StageMount {
    fn new(engine: &Engine, layers: &[PathBuf]) -> Result<Self, BuildError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = engine.root().join("build/mounts").join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let fail = |what: &str, e: std::io::Error| {
            BuildError::Run(format!("{what} {}: {e}", dir.display()))
        };
        for sub in ["merged", "empty-a", "empty-b"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| fail("making", e))?;
        }
        let mut lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        lower.push(dir.join("empty-a").display().to_string());
        if lower.len() < 2 {
            lower.push(dir.join("empty-b").display().to_string());
        }
        let opts = std::ffi::CString::new(format!("lowerdir={}", lower.join(":")))
            .map_err(|e| fail("overlay options for", std::io::Error::other(e)))?;
        let m = StageMount { dir: dir.clone() };
        rustix::mount::mount(
            "overlay",
            m.merged(),
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            Some(opts.as_c_str()),
        )
        .map_err(|e| fail("mounting the stage at", e.into()))?;
        Ok(m)
    }

    fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
}

impl Drop for StageMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.merged(), rustix::mount::UnmountFlags::DETACH);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The engine mounts of a step's `--mount` flags, and the stage mounts they bind (held until
/// the step is over).
fn mounts(
    engine: &Engine,
    r: &RunSpec<'_>,
    held: &mut Vec<StageMount>,
) -> Result<Vec<Mount>, BuildError> {
    let mut out = Vec::new();
    for raw in &r.mounts {
        let o = opts(raw);
        let kind = o.get("type").map_or("bind", String::as_str);
        let target = o
            .get("target")
            .or_else(|| o.get("dst"))
            .or_else(|| o.get("destination"))
            .cloned();
        match kind {
            "cache" => {
                let target = target.ok_or_else(|| {
                    BuildError::Run(format!("--mount={raw}: a cache mount needs target=PATH"))
                })?;
                let id = o.get("id").cloned().unwrap_or_else(|| target.clone());
                let digest = hex::encode(Sha256::digest(id.as_bytes()));
                let dir = engine.root().join("build/cache-mounts").join(&digest[..32]);
                fs::create_dir_all(&dir).map_err(|e| {
                    BuildError::Run(format!("making the cache {}: {e}", dir.display()))
                })?;
                out.push(Mount {
                    source: MountSource::Bind { source: dir },
                    target,
                    readonly: false,
                });
            }
            "secret" => {
                let id = o
                    .get("id")
                    .cloned()
                    .or_else(|| {
                        target
                            .as_ref()
                            .and_then(|t| t.rsplit('/').next().map(str::to_owned))
                    })
                    .ok_or_else(|| {
                        BuildError::Run(format!("--mount={raw}: a secret mount needs id=ID"))
                    })?;
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                match r.secrets.get(&id) {
                    Some(src) => out.push(Mount {
                        source: MountSource::Bind { source: src.clone() },
                        target,
                        readonly: true,
                    }),
                    None if truthy(o.get("required")) => {
                        return Err(BuildError::Run(format!(
                            "secret {id} is required by the step but was not given: pass --secret id={id},src=FILE"
                        )))
                    }
                    // An optional secret that was not given: nothing is mounted (BuildKit).
                    None => {}
                }
            }
            "tmpfs" => {
                let target = target.ok_or_else(|| {
                    BuildError::Run(format!("--mount={raw}: a tmpfs mount needs target=PATH"))
                })?;
                let size = o
                    .get("size")
                    .map(|s| format!("size={s}"))
                    .unwrap_or_default();
                out.push(Mount {
                    source: MountSource::Tmpfs { options: size },
                    target,
                    readonly: false,
                });
            }
            "bind" => {
                let target = target.ok_or_else(|| {
                    BuildError::Run(format!("--mount={raw}: a bind mount needs target=PATH"))
                })?;
                let src = crate::ignore::clean(
                    o.get("source")
                        .or_else(|| o.get("src"))
                        .map_or("", String::as_str),
                );
                if src == ".." || src.starts_with("../") {
                    return Err(BuildError::Run(format!(
                        "--mount={raw}: source is outside the build context"
                    )));
                }
                if let Some(from) = o.get("from") {
                    let layers = r.from_layers.get(from).ok_or_else(|| {
                        BuildError::Run(format!("--mount={raw}: no stage or image {from}"))
                    })?;
                    let m = StageMount::new(engine, layers)?;
                    let view = View::new(layers.clone());
                    let canon = canonical(&view, &src)?;
                    let source = m.merged().join(&canon);
                    if !source.exists() {
                        return Err(BuildError::Run(format!(
                            "--mount={raw}: {src} is not in {from}"
                        )));
                    }
                    held.push(m);
                    out.push(Mount {
                        source: MountSource::Bind { source },
                        target,
                        readonly: true,
                    });
                    continue;
                }
                let host = r.context.join(&src);
                let real = fs::canonicalize(&host).map_err(|e| {
                    BuildError::Run(format!("--mount={raw}: {}: {e}", host.display()))
                })?;
                let ctx = fs::canonicalize(r.context).unwrap_or_else(|_| r.context.to_owned());
                if !real.starts_with(&ctx) {
                    return Err(BuildError::Run(format!(
                        "--mount={raw}: source leads outside the build context"
                    )));
                }
                if truthy(o.get("rw")) || truthy(o.get("readwrite")) {
                    return Err(BuildError::Run(format!(
                        "--mount={raw}: a writable bind of the context is not supported (its writes would reach your files); copy what the step changes"
                    )));
                }
                out.push(Mount {
                    source: MountSource::Bind { source: real },
                    target,
                    readonly: true,
                });
            }
            other => {
                return Err(BuildError::Run(format!(
                    "--mount={raw}: unknown type {other:?} (bind, cache, secret, tmpfs)"
                )))
            }
        }
    }
    Ok(out)
}

/// Removes the container when the step is over, whatever became of it.
struct Cleanup<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove(&self.id, true, true) {
            tracing::warn!(container = %self.id, "removing the build step's container: {e}");
        }
    }
}

/// Runs one `RUN` step and stores its layer.
pub fn run(engine: &Engine, store: &Store, r: &RunSpec<'_>) -> Result<RunOutput, BuildError> {
    let mut held = Vec::new();
    let mounts = mounts(engine, r, &mut held)?;
    // Mount points the image does not have: made by the runtime, removed from the layer.
    let mut made = Vec::new();
    for m in &mounts {
        let canon = canonical(r.view, &m.target)?;
        if r.view.lookup(&canon, false).ok().flatten().is_none() {
            made.push(canon);
        }
    }
    let spec = ContainerSpec {
        image: r.image.to_string(),
        pull: PullPolicy::Never,
        entrypoint: Some(Vec::new()),
        command: r.args.clone(),
        env: r.env.clone(),
        mounts,
        networking: Networking {
            networks: vec![r.network.to_owned()],
            ..Default::default()
        },
        labels: BTreeMap::from([("corral.build".to_owned(), "step".to_owned())]),
        healthcheck: corral_engine::health::HealthSpec {
            disable: true,
            ..Default::default()
        },
        no_image_volumes: true,
        ..Default::default()
    };
    let created = engine
        .create(&spec, &PullOptions::default())
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    let _cleanup = Cleanup {
        engine,
        id: created.id.clone(),
    };
    r.cancel.track(&created.id, true);
    struct Untrack<'a>(&'a crate::Cancel, &'a str);
    impl Drop for Untrack<'_> {
        fn drop(&mut self) {
            self.0.track(self.1, false);
        }
    }
    let _untrack = Untrack(r.cancel, &created.id);
    if r.cancel.cancelled() {
        return Err(BuildError::Interrupted);
    }
    let mode = if r.show_output {
        Attach::Attached
    } else {
        Attach::Streams {
            stdout: false,
            stderr: false,
        }
    };
    let code = match engine.start_with(&created.id, mode) {
        Ok(Started::Exited(code)) => code,
        Ok(Started::Detached) => engine
            .wait(&created.id)
            .map_err(|e| BuildError::Engine(e.to_string()))?
            .unwrap_or(255),
        Err(e) => return Err(BuildError::Engine(e.to_string())),
    };
    let cs = engine
        .containers()
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    if r.cancel.cancelled() {
        return Err(BuildError::Interrupted);
    }
    if code != 0 {
        let output = if r.show_output {
            String::new()
        } else {
            log_text(&cs.dir(&created.id).join("ctr.log"))
        };
        return Err(BuildError::RunFailed { code, output });
    }
    let upper = cs.dir(&created.id).join("upper");
    for m in &made {
        remove_made(&upper, m);
    }
    let stored = crate::state::store_layer(store, |w| {
        engine
            .write_layer(&created.id, w)
            .map_err(|e| BuildError::Run(format!("reading the step's changes: {e}")))
    });
    let (diff_id, size) = stored?;
    Ok(RunOutput { diff_id, size })
}

/// Takes a mount point the step made (and the parents it made, when empty) out of the upper
/// directory.
fn remove_made(upper: &Path, rel: &str) {
    let mut cur = rel.to_owned();
    loop {
        let p = upper.join(&cur);
        let Ok(md) = fs::symlink_metadata(&p) else {
            break;
        };
        let gone = if md.is_dir() {
            fs::remove_dir(&p).is_ok()
        } else {
            md.len() == 0 && fs::remove_file(&p).is_ok()
        };
        if !gone {
            break;
        }
        match cur.rsplit_once('/') {
            Some((parent, _)) => cur = parent.to_owned(),
            None => break,
        }
    }
}

/// The text of a json-file log.
fn log_text(path: &Path) -> String {
    let raw = fs::read_to_string(path).unwrap_or_default();
    raw.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["log"].as_str().map(str::to_owned))
        .collect()
}
