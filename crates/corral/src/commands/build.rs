//! `corral build` and `corral builder prune`: flags to corral-build's options, progress to
//! standard output, the image id last.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corral_build::{BuildOptions, Progress};
use corral_engine::containers::PullOptions;
use corral_engine::events::Event;
use corral_engine::Engine;
use corral_image::reference::ImageName;
use serde_json::json;

use crate::cli::{BuildArgs, BuilderCommand};
use crate::exit::Code;
use crate::progress::Bars;

fn key_values(flag: &str, list: &[String], env_fallback: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None if env_fallback && !kv.is_empty() => {
                // docker: `--build-arg NAME` takes NAME's value from the environment, if set.
                if let Ok(v) = std::env::var(kv) {
                    out.insert(kv.clone(), v);
                }
            }
            _ => bail!("{flag} {kv:?}: the form is KEY=VALUE"),
        }
    }
    Ok(out)
}

fn secrets(list: &[String], scratch: &tempfile::TempDir) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for s in list {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for kv in s.split(',') {
            match kv.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_owned()),
                Some(("type", "file" | "env")) => {}
                _ => bail!("--secret {s:?}: the form is id=ID,src=FILE or id=ID,env=VAR"),
            }
        }
        let id = id.with_context(|| format!("--secret {s:?}: id=ID is missing"))?;
        let path = match (src, env) {
            (Some(p), _) => {
                let p = std::fs::canonicalize(&p)
                    .with_context(|| format!("--secret {s:?}: {}", p.display()))?;
                if !p.is_file() {
                    bail!("--secret {s:?}: {} is not a file", p.display());
                }
                p
            }
            (None, Some(var)) => {
                let v = std::env::var(&var)
                    .with_context(|| format!("--secret {s:?}: the environment has no {var}"))?;
                let p = scratch.path().join(&id);
                std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))?;
                p
            }
            // docker: `--secret id=X` alone reads the environment variable X.
            (None, None) => {
                let v = std::env::var(&id).with_context(|| {
                    format!("--secret {s:?}: give src=FILE or env=VAR (the environment has no {id} either)")
                })?;
                let p = scratch.path().join(&id);
                std::fs::write(&p, v).with_context(|| format!("writing {}", p.display()))?;
                p
            }
        };
        out.insert(id, path);
    }
    Ok(out)
}

struct Stdout;

impl Progress for Stdout {
    fn line(&self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }
}

pub fn build(engine: &Engine, a: BuildArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        if p != "linux/amd64" && p != "amd64" {
            bail!("--platform {p}: corral builds linux/amd64 images only");
        }
    }
    if a.isolation != "container" && a.isolation != "vm" {
        bail!(
            "--isolation {}: RUN steps run in a container (default) or a vm",
            a.isolation
        );
    }
    let output = match &a.output {
        None => None,
        Some(o) => {
            let mut kind = None;
            let mut dest = None;
            for kv in o.split(',') {
                match kv.split_once('=') {
                    Some(("type", t)) => kind = Some(t.to_owned()),
                    Some(("dest", d)) => dest = Some(PathBuf::from(d)),
                    _ => bail!("-o {o:?}: the form is type=oci,dest=FILE or type=docker,dest=FILE"),
                }
            }
            match (kind.as_deref(), dest) {
                (Some("oci" | "docker" | "tar"), Some(d)) => Some(d),
                (Some(t), _) if !matches!(t, "oci" | "docker" | "tar") => {
                    bail!("-o type={t}: corral writes type=oci or type=docker archives")
                }
                _ => bail!("-o {o:?}: dest=FILE is missing"),
            }
        }
    };
    let tags: Vec<ImageName> = a
        .tag
        .iter()
        .map(|t| ImageName::parse(t).with_context(|| format!("-t {t}")))
        .collect::<Result<_>>()?;
    let scratch = tempfile::tempdir().context("making a temporary directory for secrets")?;
    let dockerfile_text = match &a.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("reading the Dockerfile from standard input")?;
            Some(t)
        }
        _ => None,
    };
    let quiet = a.quiet || a.json;
    let opts = BuildOptions {
        context: a.context.clone(),
        dockerfile: a.file.clone().filter(|f| f.as_os_str() != "-"),
        dockerfile_text,
        tags: a.tag.clone(),
        build_args: key_values("--build-arg", &a.build_arg, true)?,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        labels: key_values("--label", &a.label, false)?,
        network: a.network.clone(),
        secrets: secrets(&a.secret, &scratch)?,
        quiet,
        pull_options: PullOptions {
            progress: Some(Arc::new(Bars::new(
                quiet || !std::io::stderr().is_terminal(),
            ))),
            registry: None,
        },
        cancel: Arc::new(corral_build::Cancel::default()),
        isolation_vm: a.isolation == "vm",
    };
    // ^C (or a SIGTERM) stops the build: the running steps are killed, their containers
    // removed, nothing is tagged.
    let signal = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let handle = {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("listening for ^C")?;
        let handle = signals.handle();
        let (engine, cancel, signal) = (engine.clone(), opts.cancel.clone(), signal.clone());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                signal.store(sig, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel(&engine);
            }
        });
        handle
    };
    let started = std::time::Instant::now();
    let result = corral_build::build(engine, &opts, &Stdout);
    handle.close();
    let built = match result {
        Ok(b) => b,
        Err(corral_build::BuildError::Interrupted) => {
            eprintln!("error: {}", corral_build::BuildError::Interrupted);
            let sig = signal.load(std::sync::atomic::Ordering::SeqCst);
            return Err(Code(128 + if sig == 0 { 2 } else { sig }).into());
        }
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            return Err(Code(1).into());
        }
    };
    let store = engine.images()?;
    let mut tagged = Vec::new();
    for n in &tags {
        store.set_name(n, &built.manifest)?;
        tagged.push(n.full());
    }
    if tags.is_empty() {
        store.set_dangling(&built.manifest)?;
    }
    let id = built.id.to_string();
    engine.emit(
        Event::new("image", "build", &id).attr("name", tagged.first().map_or("", String::as_str)),
    );
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &id).with_context(|| format!("writing --iidfile {}", p.display()))?;
    }
    if let Some(dest) = &output {
        let img = store.image(&built.manifest)?;
        let f =
            std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
        corral_image::archive::save(&store, &img, std::io::BufWriter::new(f))
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    if !built.unused_args.is_empty() && !a.quiet {
        eprintln!(
            "warning: build arguments not used by any stage: {}",
            built.unused_args.join(", ")
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "Id": id,
                "Digest": built.manifest.to_string(),
                "Tags": tagged,
                "StepsRun": built.ran,
                "StepsCached": built.cached,
                "Seconds": started.elapsed().as_secs_f64(),
            }))?
        );
        return Ok(());
    }
    if !a.quiet {
        for t in &tagged {
            println!("Successfully tagged {t}");
        }
        eprintln!(
            "built in {:.2}s: {} steps run, {} cached",
            started.elapsed().as_secs_f64(),
            built.ran,
            built.cached
        );
    }
    println!("{}", built.id.hex());
    Ok(())
}

pub fn builder(engine: &Engine, cmd: BuilderCommand) -> Result<()> {
    match cmd {
        BuilderCommand::Prune { .. } => {
            let store = engine.images()?;
            let in_use = engine.layers_in_use()?;
            let n = store.cache_prune()?;
            // What only the cache kept is gone; what containers still mount is kept.
            let freed = store.gc_keeping(&in_use)?;
            println!("Deleted {n} build cache entries");
            println!("Total reclaimed space: {}", crate::output::human(freed));
        }
    }
    Ok(())
}
