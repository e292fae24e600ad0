//! `image ...`, `pull`, `push`, `login`, `logout` and their docker aliases.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corral_image::reference::{self, ImageName};
use corral_image::registry::{self, AuthFile, RegistryOptions};
use corral_image::{archive, import, Image, Store};
use serde_json::json;

use crate::cli::{ImageCommand, RegistryArgs};
use crate::progress::Bars;

fn store(root: &Path) -> Result<Store> {
    Store::open(root.join("images"))
        .with_context(|| format!("opening the image store under {}", root.display()))
}

fn name(s: &str) -> Result<ImageName> {
    Ok(ImageName::parse(s)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn options(root: &Path, a: &RegistryArgs) -> RegistryOptions {
    RegistryOptions {
        tls_verify: a.tls_verify,
        auth_file: a.authfile.clone().unwrap_or_else(|| root.join("auth.json")),
    }
}

/// Whether an image row (repository, tag, id) is listed.
type ImagePredicate = Box<dyn Fn(&str, &str, &corral_image::Digest) -> bool>;

/// `images --filter` and the REPOSITORY argument, as a predicate over (repository, tag, id).
fn image_filter(
    store: &Store,
    filters: &[String],
    repository: Option<&str>,
) -> Result<ImagePredicate> {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("--filter {f:?}: the form is KEY=VALUE"))?;
        if !matches!(k, "reference" | "dangling" | "label" | "before" | "since") {
            bail!(
                "--filter {f:?}: unknown key {k:?} (use reference, dangling, label, before, since)"
            );
        }
        by.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    let created_of = |what: &str| -> Result<String> {
        Ok(store
            .resolve(what)?
            .config
            .created()
            .clone()
            .unwrap_or_default())
    };
    let mut before = Vec::new();
    for b in by.get("before").into_iter().flatten() {
        before.push(created_of(b)?);
    }
    let mut since = Vec::new();
    for b in by.get("since").into_iter().flatten() {
        since.push(created_of(b)?);
    }
    let images: std::collections::BTreeMap<
        String,
        (String, std::collections::HashMap<String, String>),
    > = store
        .images()?
        .into_iter()
        .map(|i| {
            (
                i.id.to_string(),
                (
                    i.config.created().clone().unwrap_or_default(),
                    i.config
                        .config()
                        .as_ref()
                        .and_then(|c| c.labels().clone())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect();
    // `busybox` matches every tag; `busybox:1` one (a colon before a slash is a port).
    let any_tag =
        repository.is_some_and(|r| r.rsplit_once(':').is_none_or(|(_, t)| t.contains('/')));
    let repo_arg = repository.map(|r| {
        reference::short(
            &ImageName::parse(r)
                .map(|n| n.full())
                .unwrap_or_else(|_| r.to_owned()),
        )
    });
    let repo_arg = repo_arg.map(|r| reference::split_tag(&r));
    Ok(Box::new(
        move |repo: &str, tag: &str, id: &corral_image::Digest| {
            let (created, labels) = images.get(&id.to_string()).cloned().unwrap_or_default();
            let short_repo = reference::short(repo);
            let any = |k: &str, f: &dyn Fn(&str) -> bool| {
                by.get(k).is_none_or(|vs| vs.iter().any(|v| f(v)))
            };
            repo_arg
                .as_ref()
                .is_none_or(|(r, t)| (short_repo == *r || repo == r) && (any_tag || tag == t))
                && any("reference", &|p| {
                    let full = format!("{short_repo}:{tag}");
                    glob(p, &full) || glob(p, &short_repo)
                })
                && any("dangling", &|v| (repo == "<none>") == (v == "true"))
                && any("label", &|v| match v.split_once('=') {
                    Some((k, x)) => labels.get(k).is_some_and(|l| l == x),
                    None => labels.contains_key(v),
                })
                && before.iter().all(|b| created < *b)
                && since.iter().all(|s| created > *s)
        },
    ))
}

/// `*` matches any run of characters but `/`, as docker's reference filter.
fn glob(pattern: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && m(p, &s[1..])),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), s.as_bytes())
}

fn image_size(store: &Store, img: &Image) -> u64 {
    img.diff_ids()
        .unwrap_or_default()
        .iter()
        .map(|d| store.layer_size(d).unwrap_or(0))
        .sum()
}

fn open_input(p: &Path) -> Result<Box<dyn Read>> {
    if p.as_os_str() == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    Ok(Box::new(f))
}

pub fn run(engine: &corral_engine::Engine, cmd: ImageCommand) -> Result<()> {
    let root = engine.root();
    let store = store(root)?;
    match cmd {
        ImageCommand::Import(a) => {
            let n = name(&a.name)?;
            let input = open_input(&a.file)?;
            let id = import::import(&store, input, &n)
                .with_context(|| format!("importing {} as {n}", a.file.display()))?;
            println!("{id}");
        }
        ImageCommand::Load(a) => {
            let input: Box<dyn Read> = match &a.input {
                Some(p) => open_input(p)?,
                None if io::stdin().is_terminal() => {
                    bail!("no archive given: use -i FILE, or pipe one to standard input")
                }
                None => Box::new(io::stdin().lock()),
            };
            let what = a
                .input
                .as_ref()
                .map_or("standard input".into(), |p| p.display().to_string());
            let loaded = archive::load(&store, input).with_context(|| format!("loading {what}"))?;
            for l in loaded {
                if a.quiet {
                    println!("{}", l.id);
                } else if l.names.is_empty() {
                    println!("Loaded image ID: {}", l.id);
                } else {
                    for n in &l.names {
                        println!("Loaded image: {n}");
                    }
                }
            }
        }
        ImageCommand::Save(a) => {
            let img = store.resolve(&a.image)?;
            match &a.output {
                Some(p) => {
                    let tmp = p.with_file_name(format!(
                        ".{}.corral-tmp",
                        p.file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    ));
                    let f = File::create(&tmp)
                        .with_context(|| format!("creating {}", tmp.display()))?;
                    let res = archive::save(&store, &img, io::BufWriter::new(f))
                        .with_context(|| format!("saving {} to {}", a.image, p.display()))
                        .and_then(|()| {
                            std::fs::rename(&tmp, p)
                                .with_context(|| format!("writing {}", p.display()))
                        });
                    if res.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    res?;
                }
                None if io::stdout().is_terminal() => {
                    bail!("refusing to write an archive to a terminal: use -o FILE or redirect standard output")
                }
                None => archive::save(&store, &img, io::stdout().lock())
                    .with_context(|| format!("saving {}", a.image))?,
            }
        }
        ImageCommand::Ls(a) => {
            let mut rows = Vec::new();
            for img in store.images()? {
                let size = image_size(&store, &img);
                let created = img.config.created().clone().unwrap_or_default();
                let names: Vec<String> = if img.names.is_empty() {
                    vec![String::new()]
                } else {
                    img.names.clone()
                };
                for n in names {
                    let (repo, tag) =
                        if n.is_empty() || n.starts_with(corral_image::store::DANGLING_PREFIX) {
                            ("<none>".to_owned(), "<none>".to_owned())
                        } else {
                            reference::split_tag(&n)
                        };
                    rows.push((
                        repo,
                        tag,
                        img.id.clone(),
                        img.digest.clone(),
                        created.clone(),
                        size,
                        n,
                    ));
                }
            }
            rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            let keep = image_filter(&store, &a.filter, a.repository.as_deref())?;
            rows.retain(|r| keep(&r.0, &r.1, &r.2));
            let json = a.json || a.format.as_deref() == Some("json");
            if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
                let f = f.replace("\\t", "\t").replace("\\n", "\n");
                let header = corral_engine::template::table_header(&f);
                let tpl = corral_engine::template::Template::parse(
                    corral_engine::template::table_body(&f),
                )?;
                let mut out = io::stdout().lock();
                if let Some(h) = header {
                    writeln!(out, "{}", h.replace("I D", "IMAGE ID"))?;
                }
                for (repo, tag, id, digest, created, size, _) in &rows {
                    let since = humantime::parse_rfc3339_weak(created)
                        .ok()
                        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                        .map_or_else(String::new, |d| {
                            format!("{} ago", corral_engine::views::human_duration(d))
                        });
                    let row = json!({
                        "Repository": repo, "Tag": tag, "ID": id.short(), "Digest": digest.to_string(),
                        "CreatedAt": created, "CreatedSince": since, "Size": crate::output::human(*size),
                    });
                    writeln!(out, "{}", tpl.render(&row)?)?;
                }
                return Ok(());
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(repo, tag, id, digest, created, size, n)| {
                        json!({
                            "id": id.to_string(), "repository": repo, "tag": tag,
                            "name": if n.starts_with('@') { String::new() } else { reference::short(n) },
                            "digest": digest.to_string(), "created": created, "size": size,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if a.quiet {
                let mut seen = std::collections::BTreeSet::new();
                for r in &rows {
                    if seen.insert(r.2.clone()) {
                        println!("{}", r.2.short());
                    }
                }
            } else {
                let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(10);
                let tw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(3);
                let mut out = io::stdout().lock();
                let dw = if a.digests { 73 } else { 0 };
                writeln!(
                    out,
                    "{:w$}  {:tw$}  {:dw$}{}{:12}  {:20}  SIZE",
                    "REPOSITORY",
                    "TAG",
                    if a.digests { "DIGEST" } else { "" },
                    if a.digests { "  " } else { "" },
                    "IMAGE ID",
                    "CREATED"
                )?;
                for (repo, tag, id, digest, created, size, _) in &rows {
                    let d = if a.digests {
                        digest.to_string()
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{repo:w$}  {tag:tw$}  {d:dw$}{}{:12}  {:20}  {}",
                        if a.digests { "  " } else { "" },
                        id.short(),
                        created,
                        crate::output::human(*size)
                    )?;
                }
            }
        }
        ImageCommand::Inspect { images } => {
            let mut out = Vec::new();
            for i in &images {
                let img = store.resolve(i)?;
                let diffs = img.diff_ids()?;
                let layers: Vec<_> = img
                    .manifest
                    .layers()
                    .iter()
                    .zip(&diffs)
                    .map(|(l, d)| {
                        json!({
                            "digest": l.digest().to_string(), "diff_id": d.to_string(),
                            "media_type": l.media_type().to_string(), "size": l.size(),
                            "path": store.layer_path(d),
                        })
                    })
                    .collect();
                out.push(json!({
                    "id": img.id.to_string(),
                    "digest": img.digest.to_string(),
                    "repo_tags": img.names.iter().filter(|n| !n.starts_with('@')).map(|n| reference::short(n)).collect::<Vec<_>>(),
                    "size": image_size(&store, &img),
                    "created": img.config.created(),
                    "config": img.config,
                    "manifest": img.manifest,
                    "layers": layers,
                }));
            }
            let v = if out.len() == 1 {
                out.pop().expect("one")
            } else {
                serde_json::Value::Array(out)
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ImageCommand::Tag(a) => {
            let img = store.resolve(&a.source)?;
            store.set_name(&name(&a.target)?, &img.digest)?;
        }
        ImageCommand::Rm(a) => {
            let mut failed = None;
            for i in &a.images {
                match engine.remove_image(i, a.force) {
                    Ok((untagged, deleted)) => {
                        for u in untagged.iter().filter(|u| !u.starts_with('@')) {
                            println!("Untagged: {u}");
                        }
                        for d in deleted {
                            println!("Deleted: {d}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: removing {i}: {e}");
                        failed = Some(e);
                    }
                }
            }
            if failed.is_some() {
                return Err(crate::exit::Code(crate::exit::CORRAL_FAILURE).into());
            }
        }
        ImageCommand::History {
            json,
            no_trunc,
            image,
        } => {
            let h = engine.history(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
                return Ok(());
            }
            let mut out = io::stdout().lock();
            writeln!(
                out,
                "{:25}  {:48}  {:>10}  COMMENT",
                "CREATED", "CREATED BY", "SIZE"
            )?;
            for e in h {
                let mut by = e.created_by.clone();
                if !no_trunc && by.chars().count() > 45 {
                    by = by.chars().take(44).collect::<String>() + "…";
                }
                let size = e.size.map_or("0B".to_owned(), crate::output::human);
                writeln!(
                    out,
                    "{:25}  {:48}  {:>10}  {}",
                    e.created, by, size, e.comment
                )?;
            }
        }
        ImageCommand::Prune { .. } => {
            let freed = store.gc_keeping(&engine.layers_in_use()?)?;
            println!("Reclaimed {freed} bytes ({})", crate::output::human(freed));
        }
        ImageCommand::Pull(a) => {
            let n = name(&a.reference)?;
            let opts = options(root, &a.registry);
            let bars = Arc::new(Bars::new(a.registry.quiet));
            if !a.registry.quiet {
                eprintln!("Pulling {n}");
            }
            let pulled = runtime()?
                .block_on(registry::pull(&store, &n, &opts, bars))
                .with_context(|| format!("pulling {n}"))?;
            if !a.registry.quiet {
                eprintln!("Digest: {}", pulled.digest);
            }
            println!("{}", pulled.id);
        }
        ImageCommand::Push(a) => {
            let img = store.resolve(&a.image)?;
            let dest = name(a.destination.as_deref().unwrap_or(&a.image))?;
            let opts = options(root, &a.registry);
            let bars = Arc::new(Bars::new(a.registry.quiet));
            let digest = runtime()?
                .block_on(registry::push(&store, &img, &dest, &opts, bars))
                .with_context(|| format!("pushing {} to {dest}", a.image))?;
            println!("{digest}");
        }
    }
    Ok(())
}

pub fn login(root: &Path, a: crate::cli::LoginArgs) -> Result<()> {
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from standard input")?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => bail!("give the password with --password-stdin (or -p)"),
    };
    let opts = options(root, &a.registry_args);
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    runtime()?.block_on(registry::login(&a.registry, &a.username, &password, &opts))?;
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(root: &Path, registry: &str) -> Result<()> {
    let path = root.join("auth.json");
    let mut file = AuthFile::read(&path)?;
    if file.auths.remove(registry).is_none() {
        // As docker: not an error, nothing to forget.
        println!("Not logged in to {registry}");
        return Ok(());
    }
    file.write(&path)?;
    println!("Removed login credentials for {registry}");
    Ok(())
}
