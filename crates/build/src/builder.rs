//! The build: the Dockerfile read and parsed, the global `ARG`s settled, the stages the target
//! needs found (its base, `COPY --from`, `RUN --mount=from=`) and run — each in a thread of
//! its own, waiting only for the stages it reads — and each step looked up in the cache
//! before it runs. The result is tagged only when every step succeeded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use corral_engine::containers::PullOptions;
use corral_engine::spec::PullPolicy;
use corral_engine::Engine;
use corral_image::{Digest, Store};
use sha2::{Digest as _, Sha256};

use crate::copy::{self, CopySpec, Origin};
use crate::dockerfile::{self, Dockerfile, Instr, Stage, Step};
use crate::ignore::Ignore;
use crate::layers::View;
use crate::state::State;
use crate::steps::{self, Scope};
use crate::BuildError;

mod prepare;

use prepare::{history_of_run, Action};

/// The build arguments every build defines (BuildKit's platform arguments).
const PLATFORM_ARGS: [(&str, &str); 8] = [
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

/// The proxy arguments a `RUN` sees without an `ARG` (and that stay out of the cache key).
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What to build.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (`-f`); `None`: `Dockerfile`, else `Containerfile`, in the context.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text when it came from standard input (`-f -`).
    pub dockerfile_text: Option<String>,
    /// Names to tag the result with.
    pub tags: Vec<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: pull every base image again.
    pub pull: bool,
    /// `--label`s on the result.
    pub labels: BTreeMap<String, String>,
    /// The network of `RUN` steps: `host` (the default), `none` or a corral network.
    pub network: String,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `-q`: no progress, no step output.
    pub quiet: bool,
    /// Where pulls show their progress.
    pub pull_options: PullOptions,
    /// Stops the build when cancelled.
    pub cancel: std::sync::Arc<Cancel>,
    /// Run each `RUN` in a VM of its own (`--isolation vm`).
    pub isolation_vm: bool,
}

/// Stops a build from another thread (a signal handler): no further step starts, and the
/// `RUN` steps running are killed; their containers are removed as the steps end.
#[derive(Debug, Default)]
pub struct Cancel {
    flag: AtomicBool,
    running: Mutex<BTreeSet<String>>,
}

impl Cancel {
    /// Stops the build.
    pub fn cancel(&self, engine: &Engine) {
        self.flag.store(true, Ordering::SeqCst);
        for id in self.running.lock().expect("not poisoned").iter() {
            let _ = engine.kill(id, "KILL");
        }
    }

    /// Whether the build was stopped.
    pub fn cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// A step's container is running (`true`) or gone (`false`).
    pub(crate) fn track(&self, id: &str, running: bool) {
        let mut r = self.running.lock().expect("not poisoned");
        if running {
            r.insert(id.to_owned());
        } else {
            r.remove(id);
        }
    }
}

/// Where progress goes.
pub trait Progress: Send + Sync {
    /// One line of progress.
    fn line(&self, text: &str);
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image id (config digest).
    pub id: Digest,
    /// The manifest digest.
    pub manifest: Digest,
    /// Steps run.
    pub ran: usize,
    /// Steps found in the cache.
    pub cached: usize,
    /// Build arguments no stage declared.
    pub unused_args: Vec<String>,
}

/// A stage's place in the build.
struct Plan<'a> {
    engine: &'a Engine,
    store: Store,
    opts: &'a BuildOptions,
    df: Dockerfile,
    file: String,
    context: PathBuf,
    ignore: Ignore,
    globals: BTreeMap<String, Option<String>>,
    /// Per stage index: its result when done.
    done: Mutex<HashMap<usize, Result<State, ()>>>,
    cv: Condvar,
    failed: AtomicBool,
    ran: AtomicUsize,
    cached: AtomicUsize,
    used_args: Mutex<BTreeSet<String>>,
    progress: &'a dyn Progress,
    /// Prefix progress lines with the stage's name.
    many: bool,
}

fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"corral-build/1");
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Reads the Dockerfile named by the options.
fn read_dockerfile(o: &BuildOptions) -> Result<(String, String, Option<PathBuf>), BuildError> {
    if let Some(t) = &o.dockerfile_text {
        return Ok(("Dockerfile (stdin)".into(), t.clone(), None));
    }
    let path = match &o.dockerfile {
        Some(p) => p.clone(),
        None => {
            let d = o.context.join("Dockerfile");
            let c = o.context.join("Containerfile");
            if d.exists() || !c.exists() {
                d
            } else {
                c
            }
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BuildError::Invalid(format!(
            "cannot read the Dockerfile {}: {e} (name it with -f, or put a Dockerfile or Containerfile in the context)",
            path.display()
        ))
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    Ok((name, text, Some(path)))
}

/// Builds an image as `o` says.
pub fn build(
    engine: &Engine,
    o: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Built, BuildError> {
    let md = std::fs::metadata(&o.context).map_err(|e| {
        BuildError::Invalid(format!("the build context {}: {e}", o.context.display()))
    })?;
    if !md.is_dir() {
        return Err(BuildError::Invalid(format!(
            "the build context {} is not a directory",
            o.context.display()
        )));
    }
    let context = std::fs::canonicalize(&o.context).unwrap_or_else(|_| o.context.clone());
    let (file, text, path) = read_dockerfile(o)?;
    let df = dockerfile::parse(&text).map_err(|err| BuildError::Parse {
        file: file.clone(),
        err,
    })?;
    // `Dockerfile.dockerignore` beside the Dockerfile wins over the context's (BuildKit).
    let ignore_text = path
        .as_ref()
        .map(|p| PathBuf::from(format!("{}.dockerignore", p.display())))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::fs::read_to_string(context.join(".dockerignore")).ok())
        .unwrap_or_default();
    let store = engine
        .images()
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    let _content = store.content_lock()?;
    let mut globals: BTreeMap<String, Option<String>> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    let mut used = BTreeSet::new();
    for step in &df.global_args {
        let Instr::Arg(raw) = &step.instr else {
            continue;
        };
        let lookup = |n: &str| globals.get(n).cloned().flatten();
        let pairs = crate::expand::pairs(raw, df.escape, &lookup, false)
            .map_err(|e| BuildError::Invalid(format!("expansion: {e}")).at(&file, step))?;
        for (k, default) in pairs {
            let v = o.build_args.get(&k).cloned().or(default);
            if o.build_args.contains_key(&k) {
                used.insert(k.clone());
            }
            globals.insert(k, v);
        }
    }
    let target = match &o.target {
        Some(t) => df
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .map(|s| s.index)
            .ok_or_else(|| {
                BuildError::Invalid(format!(
                    "target stage {t:?} could not be found (the stages: {})",
                    df.stages
                        .iter()
                        .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        None => df.stages.len() - 1,
    };
    let plan = Plan {
        engine,
        store: store.clone(),
        opts: o,
        file,
        context,
        ignore: Ignore::parse(&ignore_text),
        globals,
        done: Mutex::new(HashMap::new()),
        cv: Condvar::new(),
        failed: AtomicBool::new(false),
        ran: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        used_args: Mutex::new(used),
        progress,
        many: false,
        df,
    };
    let needed = plan.needed(target)?;
    let plan = Plan {
        many: needed.len() > 1,
        ..plan
    };
    let errors: Mutex<Vec<BuildError>> = Mutex::new(Vec::new());
    let results: Mutex<HashMap<usize, State>> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for &i in &needed {
            let plan = &plan;
            let errors = &errors;
            let results = &results;
            s.spawn(move || {
                let stage = &plan.df.stages[i];
                let r = plan.run_stage(stage);
                let mut done = plan.done.lock().expect("not poisoned");
                match r {
                    Ok(st) => {
                        results.lock().expect("not poisoned").insert(i, st.clone());
                        done.insert(i, Ok(st));
                    }
                    Err(e) => {
                        plan.failed.store(true, Ordering::SeqCst);
                        done.insert(i, Err(()));
                        if !matches!(e, BuildError::Cancelled) {
                            errors.lock().expect("not poisoned").push(e);
                        }
                    }
                }
                plan.cv.notify_all();
            });
        }
    });
    if let Some(e) = errors
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .next()
    {
        return Err(e);
    }
    let mut state = results
        .into_inner()
        .expect("not poisoned")
        .remove(&target)
        .ok_or(BuildError::Cancelled)?;
    if !o.labels.is_empty() {
        let text = format!(
            "LABEL {}",
            o.labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let k = key(&[&state.identity(), &text]);
        state = match (!o.no_cache).then(|| store.cache_get(&k)).flatten() {
            Some(img) => State::of_image(&store, &img)?,
            None => {
                let cfg = state.cfg();
                let labels = cfg.entry("Labels").or_insert_with(|| serde_json::json!({}));
                if !labels.is_object() {
                    *labels = serde_json::json!({});
                }
                for (k, v) in &o.labels {
                    labels[k] = serde_json::json!(v);
                }
                state.history(&text, true);
                let d = state.store(&store)?;
                store.cache_put(&k, &d)?;
                state
            }
        };
    }
    let manifest = match &state.image {
        Some(d) => d.clone(),
        None => state.store(&store)?,
    };
    let id = store.image(&manifest)?.id;
    let used = plan.used_args.into_inner().expect("not poisoned");
    Ok(Built {
        id,
        manifest,
        ran: plan.ran.load(Ordering::SeqCst),
        cached: plan.cached.load(Ordering::SeqCst),
        unused_args: o
            .build_args
            .keys()
            .filter(|k| !used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect(),
    })
}

impl Plan<'_> {
    fn global(&self, s: &str) -> Result<String, BuildError> {
        crate::expand::word(s, self.df.escape, &|n| {
            self.globals.get(n).cloned().flatten()
        })
        .map_err(|e| BuildError::Invalid(format!("expansion: {e}")))
    }

    /// The stage a name or index refers to, if it is one (and comes before `before`).
    fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        let found = self
            .df
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|i| *i < self.df.stages.len())
            });
        found.filter(|i| *i < before)
    }

    /// The stages the target needs, itself included.
    fn needed(&self, target: usize) -> Result<Vec<usize>, BuildError> {
        let mut out = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !out.insert(i) {
                continue;
            }
            let st = &self.df.stages[i];
            let base = self
                .global(&st.base)
                .map_err(|e| e.at(&self.file, &st.from))?;
            if let Some(d) = self.stage_ref(&base, i) {
                todo.push(d);
            }
            for step in &st.steps {
                let froms: Vec<String> = match &step.instr {
                    Instr::Copy { flags, .. } => flags
                        .iter()
                        .filter(|(n, _)| n == "from")
                        .filter_map(|(_, v)| v.clone())
                        .collect(),
                    Instr::Run { flags, .. } => flags
                        .iter()
                        .filter(|(n, _)| n == "mount")
                        .filter_map(|(_, v)| v.as_ref())
                        .flat_map(|v| v.split(','))
                        .filter_map(|kv| kv.strip_prefix("from=").map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                for f in froms {
                    let f = self.global(&f).map_err(|e| e.at(&self.file, step))?;
                    if let Some(d) = self.stage_ref(&f, i) {
                        todo.push(d);
                    } else if self
                        .df
                        .stages
                        .iter()
                        .any(|s| s.name.as_deref() == Some(f.to_ascii_lowercase().as_str()))
                    {
                        return Err(BuildError::Invalid(format!(
                            "stage {f:?} is used before it is defined"
                        ))
                        .at(&self.file, step));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Waits for stage `i`'s result.
    fn wait_stage(&self, i: usize) -> Result<State, BuildError> {
        let mut done = self.done.lock().expect("not poisoned");
        loop {
            if let Some(r) = done.get(&i) {
                return r.clone().map_err(|()| BuildError::Cancelled);
            }
            done = self.cv.wait(done).expect("not poisoned");
        }
    }

    fn say(&self, stage: &Stage, n: usize, total: usize, what: &str) {
        if self.opts.quiet {
            return;
        }
        let name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", stage.index));
        if self.many {
            self.progress.line(&format!("[{name} {n}/{total}] {what}"));
        } else {
            self.progress.line(&format!("[{n}/{total}] {what}"));
        }
    }

    fn pull_policy(&self) -> PullPolicy {
        if self.opts.pull {
            PullPolicy::Always
        } else {
            PullPolicy::Missing
        }
    }

    /// Runs one stage to its end.
    fn run_stage(&self, stage: &Stage) -> Result<State, BuildError> {
        let base = self
            .global(&stage.base)
            .map_err(|e| e.at(&self.file, &stage.from))?;
        if let Some(p) = &stage.platform {
            let p = self.global(p).map_err(|e| e.at(&self.file, &stage.from))?;
            if p != "linux/amd64" && !p.is_empty() {
                return Err(BuildError::Invalid(format!(
                    "--platform={p}: corral builds for linux/amd64 only"
                ))
                .at(&self.file, &stage.from));
            }
        }
        let mut steps: Vec<Step> = stage.steps.clone();
        let total = steps.len() + 1;
        self.say(stage, 1, total, &stage.from.text);
        let state = if base.eq_ignore_ascii_case("scratch") {
            State::scratch()
        } else if let Some(dep) = self.stage_ref(&base, stage.index) {
            self.wait_stage(dep)?
        } else {
            let (_, img) = self
                .engine
                .image_for_run(&base, self.pull_policy(), &self.opts.pull_options)
                .map_err(|e| {
                    BuildError::Image(format!("base image {base}: {e}")).at(&self.file, &stage.from)
                })?;
            State::of_image(&self.store, &img)?
        };
        let mut state = state;
        // A stage whose base sets no PATH gets the usual one (BuildKit and buildah do too).
        if !state.env().iter().any(|(k, _)| k == "PATH") {
            state.set_env("PATH", crate::state::DEFAULT_PATH);
        }
        let mut scope = Scope {
            state,
            args: BTreeMap::new(),
            cmd_set: false,
            escape: self.df.escape,
        };
        // The base's ONBUILD triggers run first, and are not inherited.
        let triggers: Vec<String> = scope
            .state
            .get("OnBuild")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            scope.state.cfg().remove("OnBuild");
            for t in triggers.iter().rev() {
                let mut step = dockerfile::parse_trigger(t).map_err(|e| {
                    BuildError::Invalid(format!("the base image's ONBUILD {t:?}: {}", e.message))
                        .at(&self.file, &stage.from)
                })?;
                step.line = stage.from.line;
                step.column = stage.from.column;
                step.text = format!("ONBUILD {}", step.text);
                steps.insert(0, step);
            }
        }
        let total = steps.len() + 1;
        for (n, step) in steps.iter().enumerate() {
            if self.opts.cancel.cancelled() {
                return Err(BuildError::Interrupted);
            }
            if self.failed.load(Ordering::SeqCst) {
                return Err(BuildError::Cancelled);
            }
            self.step(stage, &mut scope, step, n + 2, total)
                .map_err(|e| e.at(&self.file, step))?;
        }
        if scope.state.image.is_none() {
            scope.state.store(&self.store)?;
        }
        Ok(scope.state)
    }

    /// Looks a step up in the cache, or runs it.
    fn step(
        &self,
        stage: &Stage,
        scope: &mut Scope,
        step: &Step,
        n: usize,
        total: usize,
    ) -> Result<(), BuildError> {
        let started = Instant::now();
        if let Instr::Arg(raw) = &step.instr {
            let pairs = crate::expand::pairs(raw, scope.escape, &|v| scope.lookup(v), false)
                .map_err(|e| BuildError::Invalid(format!("expansion: {e}")))?;
            for (k, default) in pairs {
                let given = self.opts.build_args.get(&k).cloned();
                if given.is_some() {
                    self.used_args
                        .lock()
                        .expect("not poisoned")
                        .insert(k.clone());
                }
                let v = given
                    .or(default)
                    .or_else(|| self.globals.get(&k).cloned().flatten());
                scope.args.insert(k, v);
            }
            self.say(stage, n, total, &step.text);
            return Ok(());
        }
        let (k, action) = self.prepare(scope, step)?;
        // Files `ADD` fetched live until the step is over, hit or miss.
        struct Fetched(Vec<PathBuf>);
        impl Drop for Fetched {
            fn drop(&mut self) {
                for p in &self.0 {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        let _fetched = Fetched(match &action {
            Action::Copy(_, spec) => spec
                .sources
                .iter()
                .filter_map(|s| match s {
                    copy::Src::Fetched(f) => Some(f.path.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        });
        if !self.opts.no_cache {
            if let Some(img) = self.store.cache_get(&k) {
                scope.state = State::of_image(&self.store, &img)?;
                if let Instr::Cmd(_) = step.instr {
                    scope.cmd_set = true;
                }
                self.cached.fetch_add(1, Ordering::SeqCst);
                self.say(stage, n, total, &format!("{}  CACHED", step.text));
                return Ok(());
            }
        }
        self.say(stage, n, total, &step.text);
        let mut next = scope.clone();
        match action {
            Action::Config => {
                steps::apply(&mut next, &step.instr, &step.text)?;
                next.state.history(&step.text, true);
            }
            Action::Workdir(dir) => {
                next.state
                    .cfg()
                    .insert("WorkingDir".into(), serde_json::json!(dir));
                let view = View::new(scope.state.layer_dirs(&self.store));
                if view.lookup(&dir, true).ok().flatten().is_none() {
                    // Made now, as Docker makes it, owned by root.
                    let spec = CopySpec {
                        sources: Vec::new(),
                        dest: dir.clone(),
                        chown: None,
                        chmod: None,
                        extract: false,
                        keyword: "WORKDIR",
                    };
                    let planned = copy::plan_dirs(&spec, &view)?;
                    let (d, size) = self.layer(|w| copy::write(&planned, w))?;
                    next.state.add_layer(d, size, &step.text);
                } else {
                    next.state.history(&step.text, true);
                }
            }
            Action::Copy(origin, spec) => {
                let view = View::new(scope.state.layer_dirs(&self.store));
                let o = match &origin {
                    None => Origin::Context {
                        dir: &self.context,
                        ignore: &self.ignore,
                    },
                    Some(v) => Origin::Image(v.clone()),
                };
                let planned = copy::plan(&o, &spec, &view)?;
                let (d, size) = self.layer(|w| copy::write(&planned, w))?;
                next.state.add_layer(d, size, &step.text);
            }
            Action::Run(args, env, mounts, from_layers) => {
                let image = match &scope.state.image {
                    Some(d) => d.clone(),
                    None => next.state.store(&self.store)?,
                };
                let view = View::new(scope.state.layer_dirs(&self.store));
                let run = if self.opts.isolation_vm {
                    crate::run_vm::run
                } else {
                    crate::run::run
                };
                let out = run(
                    self.engine,
                    &self.store,
                    &crate::run::RunSpec {
                        image: &image,
                        args: args.clone(),
                        env,
                        network: if self.opts.network.is_empty() {
                            "host"
                        } else {
                            &self.opts.network
                        },
                        mounts,
                        secrets: &self.opts.secrets,
                        from_layers: &from_layers,
                        cancel: &self.opts.cancel,
                        context: &self.context,
                        show_output: !self.opts.quiet,
                        view: &view,
                    },
                )?;
                next.state
                    .add_layer(out.diff_id, out.size, &history_of_run(&args));
            }
        }
        let d = next.state.store(&self.store)?;
        self.store.cache_put(&k, &d)?;
        *scope = next;
        self.ran.fetch_add(1, Ordering::SeqCst);
        if !self.opts.quiet && matches!(step.instr, Instr::Run { .. } | Instr::Copy { .. }) {
            self.say(
                stage,
                n,
                total,
                &format!("DONE {:.2}s", started.elapsed().as_secs_f64()),
            );
        }
        Ok(())
    }

    /// Writes a layer and stores it ([`crate::state::store_layer`]).
    fn layer(
        &self,
        write: impl FnOnce(BufWriter<std::fs::File>) -> Result<(), BuildError>,
    ) -> Result<(Digest, u64), BuildError> {
        crate::state::store_layer(&self.store, write)
    }
}

impl Progress for std::sync::Mutex<Box<dyn std::io::Write + Send>> {
    fn line(&self, text: &str) {
        let mut w = self.lock().expect("not poisoned");
        let _ = writeln!(w, "{text}");
        let _ = w.flush();
    }
}
