//! From files to a [`Project`]: the compose files found (`-f`, `COMPOSE_FILE`, or
//! `compose.yaml`, `compose.yml`, `docker-compose.yaml`, `docker-compose.yml` in the working
//! directory), each parsed (YAML anchors and `<<` merge keys applied; a syntax error names
//! file, line and column), interpolated from the environment and `.env` (or `--env-file`),
//! merged in order by the specification's rules (mappings key by key, `ports`, `expose`,
//! `dns`, `cap_add` ... appended, `volumes` by target, `command` and `entrypoint` replaced),
//! `extends` resolved, profiles applied, and the project named (`-p`, `COMPOSE_PROJECT_NAME`,
//! `name:`, the directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::interpolate;
use crate::model::{self, NetworkDef, Project, VolumeDef};
use crate::ComposeError;

/// The default file names, in the order they are looked for.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files, in order (empty: `COMPOSE_FILE`, else the default names).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`s (default: `.env` in the project directory).
    pub env_files: Vec<PathBuf>,
    /// `--profile`s (and `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
}

/// A path cleaned of `.` and `..` (lexically), as a string.
pub fn clean_path(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::RootDir => out.clear(),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            std::path::Component::Prefix(_) => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// The project name rule: lower case letters, digits, `-` and `_`, starting with a letter or
/// digit.
pub fn normalise_name(n: &str) -> String {
    let s: String = n
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    s.trim_start_matches(['-', '_']).to_owned()
}

fn find_files(o: &LoadOptions) -> Result<Vec<PathBuf>, ComposeError> {
    if !o.files.is_empty() {
        return Ok(o
            .files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    o.cwd.join(f)
                }
            })
            .collect());
    }
    // COMPOSE_FILE from the process, else from the env files read in the working directory.
    let env = environment(o, &o.cwd)?;
    if let Some(list) = env.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        return Ok(list
            .split(sep.as_str())
            .filter(|f| !f.is_empty())
            .map(|f| o.cwd.join(f))
            .collect());
    }
    // The working directory, then its parents, as docker compose looks.
    let mut dir = Some(o.cwd.as_path());
    while let Some(d) = dir {
        for n in DEFAULT_FILES {
            if d.join(n).is_file() {
                let mut files = vec![d.join(n)];
                let over = d.join(n.replace(".y", ".override.y"));
                if over.is_file() {
                    files.push(over);
                }
                return Ok(files);
            }
        }
        dir = d.parent();
    }
    Err(ComposeError::Invalid(format!(
        "no configuration file provided: none of {} in {} or its parents (name one with -f)",
        DEFAULT_FILES.join(", "),
        o.cwd.display()
    )))
}

/// The environment for interpolation and the `COMPOSE_*` variables: `.env` in `dir` (or the
/// `--env-file`s, later ones winning), under the process's own.
fn environment(o: &LoadOptions, dir: &Path) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let env_files = if o.env_files.is_empty() {
        vec![dir.join(".env")]
    } else {
        o.env_files.clone()
    };
    for f in &env_files {
        match std::fs::read_to_string(f) {
            Ok(t) => env.extend(interpolate::dotenv(&t)),
            Err(_) if o.env_files.is_empty() => {}
            Err(e) => {
                return Err(ComposeError::Invalid(format!(
                    "--env-file {}: {e}",
                    f.display()
                )))
            }
        }
    }
    env.extend(std::env::vars());
    Ok(env)
}

/// Parses one file's YAML into JSON (anchors and merge keys applied).
fn parse_yaml(path: &Path, text: &str) -> Result<Value, ComposeError> {
    let mut v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        ComposeError::Invalid(format!("{}{at}: {e}", path.display()))
    })?;
    v.apply_merge()
        .map_err(|e| ComposeError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(v).and_then(|v: serde_yaml::Value| {
        serde_json::to_value(&v)
            .map_err(|e| ComposeError::Invalid(format!("{}: {e}", path.display())))
    })
}

/// Merges `over` into `base` by the specification's rules for services.
fn merge_service(base: &mut Value, over: &Value) {
    let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) else {
        *base = over.clone();
        return;
    };
    for (k, v) in o {
        match (k.as_str(), b.get_mut(k)) {
            ("command" | "entrypoint" | "healthcheck", _) | (_, None) => {
                b.insert(k.clone(), v.clone());
            }
            (
                "environment" | "labels" | "sysctls" | "extra_hosts" | "build" | "deploy",
                Some(existing),
            ) => {
                let mut a = to_map(existing);
                for (kk, vv) in to_map(v) {
                    a.insert(kk, vv);
                }
                *existing = Value::Object(a);
            }
            ("volumes", Some(Value::Array(existing))) => {
                let target = |m: &Value| -> String {
                    match m {
                        Value::String(s) => s.split(':').nth(1).unwrap_or(s).to_owned(),
                        Value::Object(o) => o
                            .get("target")
                            .and_then(|t| t.as_str())
                            .unwrap_or("")
                            .to_owned(),
                        _ => String::new(),
                    }
                };
                for nv in v.as_array().cloned().unwrap_or_default() {
                    let t = target(&nv);
                    existing.retain(|e| target(e) != t);
                    existing.push(nv);
                }
            }
            (
                "ports" | "expose" | "dns" | "dns_search" | "cap_add" | "cap_drop" | "env_file"
                | "tmpfs" | "profiles",
                Some(Value::Array(existing)),
            ) => {
                for nv in v.as_array().cloned().unwrap_or_default() {
                    if !existing.contains(&nv) {
                        existing.push(nv);
                    }
                }
            }
            (_, Some(existing)) if existing.is_object() && v.is_object() => {
                merge_service(existing, v)
            }
            (_, Some(existing)) => *existing = v.clone(),
        }
    }
}

/// A mapping, or a `K=V` list, as a mapping.
fn to_map(v: &Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_owned(), Value::String(v.to_owned())),
                None => (s.to_owned(), Value::Null),
            })
            .collect(),
        _ => serde_json::Map::new(),
    }
}

fn merge_top(base: &mut Value, over: &Value) {
    let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) else {
        return;
    };
    for (k, v) in o {
        match (k.as_str(), b.get_mut(k)) {
            ("services", Some(Value::Object(existing))) => {
                for (name, s) in v.as_object().cloned().unwrap_or_default() {
                    match existing.get_mut(&name) {
                        Some(e) => merge_service(e, &s),
                        None => {
                            existing.insert(name, s);
                        }
                    }
                }
            }
            (_, Some(Value::Object(existing))) if v.is_object() => {
                for (kk, vv) in v.as_object().cloned().unwrap_or_default() {
                    existing.insert(kk, vv);
                }
            }
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Where an included service came from: its file's directory (an extension key, so that the
/// key checks let it through; never written by users).
const INCLUDED_FROM: &str = "x-corral-included-from";
/// How deep includes may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Loads the files of the top-level `include:` (`- path`, or `- path: [files]` with an
/// optional `project_directory`) into `doc`, as the Compose Specification has it: each file is
/// a compose file of its own, whose relative paths resolve from its directory (or its
/// `project_directory`), and whose services, networks, volumes, configs and secrets join the
/// project. A resource defined both here and in an included file is an error, unless the two
/// are the same. Includes nest; a cycle is refused.
fn include(
    doc: &mut Value,
    dir: &Path,
    vars: &dyn Fn(&str) -> Option<String>,
    chain: &mut Vec<PathBuf>,
) -> Result<(), ComposeError> {
    let Some(list) = doc.as_object_mut().and_then(|m| m.remove("include")) else {
        return Ok(());
    };
    let entries: Vec<Value> = match list {
        Value::Array(a) => a,
        other => {
            return Err(ComposeError::Invalid(format!(
                "include must be a list of files, not {other}"
            )))
        }
    };
    for e in entries {
        let (paths, project_dir, env_files): (Vec<String>, Option<String>, Vec<String>) = match &e {
            Value::String(p) => (vec![p.clone()], None, Vec::new()),
            Value::Object(m) => {
                crate::syntax::check_keys(
                    m,
                    &["path", "project_directory", "env_file"],
                    "include",
                )?;
                let paths = match m.get("path") {
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_owned).ok_or_else(|| {
                                ComposeError::Invalid("include.path: a list of file names".into())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(ComposeError::Invalid(
                            "include: each entry needs a path".into(),
                        ))
                    }
                };
                let pd = m
                    .get("project_directory")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned);
                let env_files = match m.get("env_file") {
                    None => Vec::new(),
                    Some(Value::String(f)) => vec![f.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect(),
                    Some(other) => {
                        return Err(ComposeError::Invalid(format!(
                            "include.env_file: a file name or a list, not {other}"
                        )))
                    }
                };
                (paths, pd, env_files)
            }
            other => {
                return Err(ComposeError::Invalid(format!(
                    "include: an entry is a file name or a mapping, not {other}"
                )))
            }
        };
        // The included model's own environment: its env_file (default: `.env` in its project
        // directory), under the process's own, over the including project's.
        let inc_dir = match &project_dir {
            Some(pd) => dir.join(pd),
            None => dir
                .join(&paths[0])
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.to_path_buf()),
        };
        let mut local: BTreeMap<String, String> = BTreeMap::new();
        let files: Vec<PathBuf> = if env_files.is_empty() {
            vec![inc_dir.join(".env")]
        } else {
            env_files.iter().map(|f| dir.join(f)).collect()
        };
        for f in &files {
            match std::fs::read_to_string(f) {
                Ok(t) => local.extend(interpolate::dotenv(&t)),
                Err(_) if env_files.is_empty() => {}
                Err(e) => {
                    return Err(ComposeError::Invalid(format!(
                        "include.env_file {}: {e}",
                        f.display()
                    )))
                }
            }
        }
        let inc_vars = |n: &str| {
            std::env::var(n)
                .ok()
                .or_else(|| local.get(n).cloned())
                .or_else(|| vars(n))
        };
        let vars = &inc_vars;
        let mut included = Value::Object(serde_json::Map::new());
        let mut first_dir = None;
        for p in &paths {
            let file = dir.join(p);
            let canon = file
                .canonicalize()
                .map_err(|e| ComposeError::Invalid(format!("include {}: {e}", file.display())))?;
            if chain.contains(&canon) {
                return Err(ComposeError::Invalid(format!(
                    "include {}: a cycle of includes",
                    file.display()
                )));
            }
            if chain.len() > MAX_INCLUDE_DEPTH {
                return Err(ComposeError::Invalid(format!(
                    "include {}: includes nest deeper than {MAX_INCLUDE_DEPTH}",
                    file.display()
                )));
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ComposeError::Invalid(format!("include {}: {e}", file.display())))?;
            let mut parsed = parse_yaml(&file, &text)?;
            if !parsed.is_object() {
                return Err(ComposeError::Invalid(format!(
                    "{}: the top level must be a mapping",
                    file.display()
                )));
            }
            interpolate::value(&mut parsed, vars, "")
                .map_err(|e| ComposeError::Invalid(format!("{}: {e}", file.display())))?;
            crate::syntax::check_keys(
                parsed.as_object().expect("checked"),
                model::TOP_KEYS,
                &file.display().to_string(),
            )?;
            let fdir = canon.parent().map(Path::to_path_buf).unwrap_or_default();
            chain.push(canon);
            include(&mut parsed, &fdir, vars, chain)?;
            chain.pop();
            merge_top(&mut included, &parsed);
            first_dir.get_or_insert(fdir);
        }
        let base = match project_dir {
            Some(pd) => dir.join(pd),
            None => first_dir.unwrap_or_else(|| dir.to_path_buf()),
        };
        let from = Value::String(base.display().to_string());
        let Some(inc) = included.as_object() else {
            continue;
        };
        let top = doc.as_object_mut().expect("a mapping");
        for (section, items) in inc {
            if matches!(section.as_str(), "name" | "version") || section.starts_with("x-") {
                continue;
            }
            let Some(items) = items.as_object() else {
                continue;
            };
            let target = top
                .entry(section.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            let Some(target) = target.as_object_mut() else {
                return Err(ComposeError::Invalid(format!(
                    "{section} must be a mapping"
                )));
            };
            for (name, def) in items {
                let mut def = def.clone();
                if section == "services" {
                    if let Some(m) = def.as_object_mut() {
                        m.entry(INCLUDED_FROM.to_owned()).or_insert(from.clone());
                    }
                }
                match target.get(name) {
                    Some(existing) if *existing != def => {
                        return Err(ComposeError::Invalid(format!(
                            "{section}.{name} is defined both in the project and in an included file ({}): rename one",
                            paths.join(", ")
                        )));
                    }
                    Some(_) => {}
                    None => {
                        target.insert(name.clone(), def);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Resolves `extends: {service: X}` (in the same file; `file:` too) for every service.
fn resolve_extends(doc: &mut Value, dir: &Path) -> Result<(), ComposeError> {
    let Some(services) = doc.get("services").and_then(|s| s.as_object()).cloned() else {
        return Ok(());
    };
    fn resolved(
        name: &str,
        services: &serde_json::Map<String, Value>,
        dir: &Path,
        seen: &mut Vec<String>,
    ) -> Result<Value, ComposeError> {
        if seen.iter().any(|s| s == name) {
            return Err(ComposeError::Invalid(format!(
                "services.{name}.extends: a cycle ({} -> {name})",
                seen.join(" -> ")
            )));
        }
        let me = services
            .get(name)
            .cloned()
            .ok_or_else(|| ComposeError::Invalid(format!("extends: no service {name:?}")))?;
        let Some(ext) = me.get("extends").cloned() else {
            return Ok(me);
        };
        seen.push(name.to_owned());
        let (base_name, file) = match &ext {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("service")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_owned(),
                o.get("file").and_then(|f| f.as_str()).map(str::to_owned),
            ),
            _ => {
                return Err(ComposeError::Invalid(format!(
                    "services.{name}.extends must be a name or a mapping"
                )))
            }
        };
        let mut base = match file {
            None => resolved(&base_name, services, dir, seen)?,
            Some(f) => {
                let p = dir.join(&f);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ComposeError::Invalid(format!(
                        "services.{name}.extends.file {}: {e}",
                        p.display()
                    ))
                })?;
                let other = parse_yaml(&p, &text)?;
                let others = other
                    .get("services")
                    .and_then(|s| s.as_object())
                    .cloned()
                    .unwrap_or_default();
                resolved(
                    &base_name,
                    &others,
                    p.parent().unwrap_or(dir),
                    &mut Vec::new(),
                )?
            }
        };
        let mut me = me;
        if let Some(o) = me.as_object_mut() {
            o.remove("extends");
        }
        merge_service(&mut base, &me);
        Ok(base)
    }
    let mut out = serde_json::Map::new();
    for name in services.keys() {
        out.insert(
            name.clone(),
            resolved(name, &services, dir, &mut Vec::new())?,
        );
    }
    doc["services"] = Value::Object(out);
    Ok(())
}

/// Loads the project.
pub fn load(o: &LoadOptions) -> Result<Project, ComposeError> {
    let files = find_files(o)?;
    let dir = files[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| o.cwd.clone());
    let env = environment(o, &dir)?;
    let vars = |n: &str| env.get(n).cloned();
    let mut doc = Value::Object(serde_json::Map::new());
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| ComposeError::Invalid(format!("{}: {e}", f.display())))?;
        let parsed = parse_yaml(f, &text)?;
        if !parsed.is_object() {
            return Err(ComposeError::Invalid(format!(
                "{}: the top level must be a mapping",
                f.display()
            )));
        }
        // Interpolated per file (values only, never keys), before merging.
        let mut parsed = parsed;
        interpolate::value(&mut parsed, &vars, "")
            .map_err(|e| ComposeError::Invalid(format!("{}: {e}", f.display())))?;
        crate::syntax::check_keys(
            parsed.as_object().expect("checked"),
            model::TOP_KEYS,
            &f.display().to_string(),
        )?;
        merge_top(&mut doc, &parsed);
    }
    let root_file = files[0].canonicalize().unwrap_or_else(|_| files[0].clone());
    include(&mut doc, &dir, &vars, &mut vec![root_file])?;
    resolve_extends(&mut doc, &dir)?;
    let name = o
        .project_name
        .clone()
        .or_else(|| {
            env.get("COMPOSE_PROJECT_NAME")
                .filter(|n| !n.is_empty())
                .cloned()
        })
        .or_else(|| doc.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".into());
    let name = normalise_name(&name);
    if name.is_empty() {
        return Err(ComposeError::Invalid(
            "the project name is empty after normalising: give one with -p".into(),
        ));
    }
    let mut profiles: BTreeSet<String> = o.profiles.iter().cloned().collect();
    if let Some(p) = env.get("COMPOSE_PROFILES") {
        profiles.extend(p.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let mut project = Project {
        name: name.clone(),
        ..Default::default()
    };
    let services = doc
        .get("services")
        .and_then(|s| s.as_object())
        .cloned()
        .unwrap_or_default();
    if services.is_empty() {
        return Err(ComposeError::Invalid(
            "no services: the project has nothing to run".into(),
        ));
    }
    for (n, v) in &services {
        // An included file's service resolves its relative paths from that file's directory.
        let sdir = v
            .get(INCLUDED_FROM)
            .and_then(|d| d.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.clone());
        let dir = &sdir;
        let mut s = model::service(n, v, dir)?;
        // env_file: each file's variables, under `environment`; for a variable in more than
        // one file, the last file's value stands (the Compose Specification, `env_file`).
        if let Some(files) = v.get("env_file") {
            let list: Vec<String> = match files {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .or_else(|| x.get("path").and_then(|p| p.as_str()).map(str::to_owned))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut from_files = BTreeMap::new();
            for f in list {
                let p = dir.join(&f);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ComposeError::Invalid(format!("services.{n}.env_file {}: {e}", p.display()))
                })?;
                from_files.extend(interpolate::dotenv(&text));
            }
            for (k, val) in from_files {
                s.environment.entry(k).or_insert(Some(val));
            }
        }
        // A variable named without a value takes the environment's, or is left out.
        s.environment = s
            .environment
            .into_iter()
            .filter_map(|(k, v)| match v {
                Some(v) => Some((k, Some(v))),
                None => env.get(&k).map(|v| (k, Some(v.clone()))),
            })
            .collect();
        if !s.profiles.is_empty() && !s.profiles.iter().any(|p| profiles.contains(p) || p == "*") {
            continue;
        }
        project.services.insert(n.clone(), s);
    }
    for (k, v) in doc
        .get("networks")
        .and_then(|n| n.as_object())
        .cloned()
        .unwrap_or_default()
    {
        let external = v.get("external").and_then(|e| e.as_bool()).unwrap_or(false);
        let explicit = v.get("name").and_then(|n| n.as_str()).map(str::to_owned);
        project.networks.insert(
            k.clone(),
            NetworkDef {
                name: explicit.unwrap_or_else(|| {
                    if external {
                        k.clone()
                    } else {
                        format!("{name}_{k}")
                    }
                }),
                external,
                internal: v.get("internal").and_then(|e| e.as_bool()).unwrap_or(false),
                labels: crate::syntax::key_values(
                    v.get("labels"),
                    &format!("networks.{k}.labels"),
                )?
                .into_iter()
                .map(|(a, b)| (a, b.unwrap_or_default()))
                .collect(),
                subnet: v
                    .pointer("/ipam/config/0/subnet")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned),
            },
        );
    }
    for (k, v) in doc
        .get("volumes")
        .and_then(|n| n.as_object())
        .cloned()
        .unwrap_or_default()
    {
        let external = v.get("external").and_then(|e| e.as_bool()).unwrap_or(false);
        let explicit = v.get("name").and_then(|n| n.as_str()).map(str::to_owned);
        project.volumes.insert(
            k.clone(),
            VolumeDef {
                name: explicit.unwrap_or_else(|| {
                    if external {
                        k.clone()
                    } else {
                        format!("{name}_{k}")
                    }
                }),
                external,
                labels: crate::syntax::key_values(v.get("labels"), &format!("volumes.{k}.labels"))?
                    .into_iter()
                    .map(|(a, b)| (a, b.unwrap_or_default()))
                    .collect(),
            },
        );
    }
    for (key, kind) in [("configs", "config"), ("secrets", "secret")] {
        for (k, v) in doc
            .get(key)
            .and_then(|n| n.as_object())
            .cloned()
            .unwrap_or_default()
        {
            let at = format!("{key}.{k}");
            let o = v
                .as_object()
                .ok_or_else(|| ComposeError::Invalid(format!("{at} must be a mapping")))?;
            crate::syntax::check_keys(
                o,
                &["file", "content", "environment", "external", "name"],
                &at,
            )?;
            let external = crate::syntax::boolean(o.get("external"), &format!("{at}.external"))?;
            let def = if external {
                model::FileDef {
                    external: true,
                    ..Default::default()
                }
            } else if let Some(f) = o.get("file").and_then(|f| f.as_str()) {
                model::FileDef {
                    file: Some(clean_path(&dir.join(f))),
                    ..Default::default()
                }
            } else if let Some(c) = o.get("content").and_then(|c| c.as_str()) {
                model::FileDef {
                    content: Some(c.to_owned()),
                    ..Default::default()
                }
            } else if let Some(e) = o.get("environment").and_then(|e| e.as_str()) {
                match env.get(e) {
                    Some(value) => model::FileDef {
                        content: Some(value.clone()),
                        ..Default::default()
                    },
                    None => model::FileDef {
                        missing: Some(e.to_owned()),
                        ..Default::default()
                    },
                }
            } else {
                return Err(ComposeError::Invalid(format!(
                    "{at}: give file, content, environment or external"
                )));
            };
            if kind == "config" {
                project.configs.insert(k, def);
            } else {
                project.secrets.insert(k, def);
            }
        }
    }
    check_references(&mut project)?;
    Ok(project)
}

/// Every network, volume and dependency a service names exists; the default network is added
/// when a service uses it; dependencies form no cycle.
fn check_references(p: &mut Project) -> Result<(), ComposeError> {
    let mut needs_default = false;
    for s in p.services.values() {
        if s.network_mode.is_none() && s.networks.is_empty() {
            needs_default = true;
        }
        for n in s.networks.keys() {
            if n == "default" {
                needs_default = true;
            } else if !p.networks.contains_key(n) {
                return Err(ComposeError::Invalid(format!(
                    "services.{}.networks: no network {n:?} in the top-level networks",
                    s.name
                )));
            }
        }
        for m in &s.volumes {
            if let (true, Some(src)) = (m.kind == "volume", &m.source) {
                if !p.volumes.contains_key(src) {
                    return Err(ComposeError::Invalid(format!(
                        "services.{}.volumes: no volume {src:?} in the top-level volumes",
                        s.name
                    )));
                }
            }
        }
        for u in &s.files {
            let defs = if u.kind == "config" {
                &p.configs
            } else {
                &p.secrets
            };
            if !defs.contains_key(&u.source) {
                return Err(ComposeError::Invalid(format!(
                    "services.{}.{}s: no {} {:?} in the top-level {}s",
                    s.name, u.kind, u.kind, u.source, u.kind
                )));
            }
        }
        for (d, dep) in &s.depends_on {
            if !p.services.contains_key(d) && dep.required {
                return Err(ComposeError::Invalid(format!(
                    "services.{}.depends_on: no service {d:?}",
                    s.name
                )));
            }
        }
        if let Some(m) = &s.network_mode {
            if let Some(other) = m.strip_prefix("service:") {
                if !p.services.contains_key(other) {
                    return Err(ComposeError::Invalid(format!(
                        "services.{}.network_mode: no service {other:?}",
                        s.name
                    )));
                }
            }
        }
    }
    if needs_default && !p.networks.contains_key("default") {
        p.networks.insert(
            "default".into(),
            NetworkDef {
                name: format!("{}_default", p.name),
                ..Default::default()
            },
        );
    }
    crate::order::order(p, &p.services.keys().cloned().collect::<Vec<_>>())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)], env_file: Option<&str>) -> Result<Project, ComposeError> {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("My App");
        std::fs::create_dir(&dir).unwrap();
        for (n, text) in files {
            std::fs::write(dir.join(n), text).unwrap();
        }
        if let Some(e) = env_file {
            std::fs::write(dir.join(".env"), e).unwrap();
        }
        load(&LoadOptions {
            files: files.iter().map(|(n, _)| PathBuf::from(n)).collect(),
            cwd: dir,
            ..Default::default()
        })
    }

    #[test]
    fn env_files_later_wins_and_environment_wins_over_all() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  app:\n    image: x\n    env_file: [a.env, b.env]\n    environment:\n      SET: here\n",
        )
        .unwrap();
        std::fs::write(dir.join("a.env"), "ONLY_A=a\nBOTH=a\nSET=a\n").unwrap();
        std::fs::write(dir.join("b.env"), "BOTH=b\nSET=b\n").unwrap();
        let p = load(&LoadOptions {
            cwd: dir,
            ..Default::default()
        })
        .unwrap();
        let env = &p.services["app"].environment;
        assert_eq!(env["ONLY_A"], Some("a".into()));
        assert_eq!(env["BOTH"], Some("b".into()), "the last env_file stands");
        assert_eq!(env["SET"], Some("here".into()), "environment: wins");
    }

    #[test]
    fn includes_bring_their_services_with_paths_from_their_own_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("app");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: busybox\n    depends_on: [db]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("db/compose.yaml"),
            "services:\n  db:\n    image: busybox\n    env_file: db.env\n    volumes: ['./data:/data', 'dbdata:/var/db']\nvolumes:\n  dbdata: {}\n",
        )
        .unwrap();
        std::fs::write(dir.join("db/db.env"), "PASS=s3cret\n").unwrap();
        let p = load(&LoadOptions {
            cwd: dir.clone(),
            ..Default::default()
        })
        .unwrap();
        let db = &p.services["db"];
        let canon = dir.canonicalize().unwrap();
        assert_eq!(
            db.volumes[0].source.as_deref(),
            Some(canon.join("db/data").to_str().unwrap()),
            "a bind's relative path is the included file's"
        );
        assert_eq!(db.environment["PASS"], Some("s3cret".into()));
        assert!(p.volumes.contains_key("dbdata"));
        assert!(p.services.contains_key("web"));

        // The same service in both: refused, naming it.
        std::fs::write(
            dir.join("compose.yaml"),
            "include: [db/compose.yaml]\nservices:\n  db:\n    image: other\n",
        )
        .unwrap();
        let err = load(&LoadOptions {
            cwd: dir.clone(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("services.db is defined both"), "{err}");

        // A cycle is refused.
        std::fs::write(
            dir.join("db/compose.yaml"),
            "include: [../compose.yaml]\nservices: {}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "include: [db/compose.yaml]\nservices:\n  web: {image: x}\n",
        )
        .unwrap();
        let err = load(&LoadOptions {
            cwd: dir,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn an_included_file_is_interpolated_with_its_own_env_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("app");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(
            dir.join("db/compose.yaml"),
            "services:\n  db:\n    image: ${DB_IMAGE:?set DB_IMAGE}\n",
        )
        .unwrap();
        // Its project directory's `.env` by default.
        std::fs::write(dir.join("db/.env"), "DB_IMAGE=postgres:16\n").unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "include: [db/compose.yaml]\nservices:\n  web: {image: x}\n",
        )
        .unwrap();
        let load_app = || {
            load(&LoadOptions {
                cwd: dir.clone(),
                ..Default::default()
            })
        };
        assert_eq!(
            load_app().unwrap().services["db"].image.as_deref(),
            Some("postgres:16")
        );
        // Or the entry's env_file.
        std::fs::write(dir.join("db.env"), "DB_IMAGE=mariadb:11\n").unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "include:\n  - path: db/compose.yaml\n    env_file: db.env\nservices:\n  web: {image: x}\n",
        )
        .unwrap();
        assert_eq!(
            load_app().unwrap().services["db"].image.as_deref(),
            Some("mariadb:11")
        );
        // A missing env_file named by the entry is an error.
        std::fs::write(
            dir.join("compose.yaml"),
            "include:\n  - path: db/compose.yaml\n    env_file: nope.env\nservices:\n  web: {image: x}\n",
        )
        .unwrap();
        assert!(load_app().unwrap_err().to_string().contains("nope.env"));
    }

    #[test]
    fn files_merge_interpolate_and_extend() {
        let p = project(
            &[
                (
                    "a.yaml",
                    "x-common: &c\n  restart: always\nservices:\n  base:\n    image: busybox\n    environment: [A=1]\n  web:\n    <<: *c\n    extends: base\n    image: ${IMG:-busybox}:${TAG}\n    ports: ['80']\n    environment:\n      B: $$literal\n",
                ),
                ("b.yaml", "services:\n  web:\n    ports: ['443']\n    environment: [A=2]\n"),
            ],
            Some("TAG=1.36\n"),
        )
        .unwrap();
        assert_eq!(p.name, "myapp");
        let web = &p.services["web"];
        assert_eq!(web.image.as_deref(), Some("busybox:1.36"));
        assert_eq!(web.restart.as_deref(), Some("always"));
        assert_eq!(web.ports, vec!["80", "443"]);
        assert_eq!(web.environment["A"].as_deref(), Some("2"));
        assert_eq!(web.environment["B"].as_deref(), Some("$literal"));
        assert_eq!(p.networks["default"].name, "myapp_default");
    }

    #[test]
    fn mutated_files_load_or_fail_without_panicking() {
        // A cheap stand-in for fuzz/fuzz_targets/compose_file.rs, run with the unit tests.
        let seed = "x-a: &a\n  restart: always\nservices:\n  web:\n    <<: *a\n    image: \"${IMG:-b}:${T:?t}\"\n    extends: db\n    ports: ['80', {target: 1}]\n    depends_on: {db: {condition: service_healthy}}\n    volumes: ['v:/d:ro', {type: bind, source: ., target: /x}]\n  db: {image: x, healthcheck: {test: true}}\nvolumes: {v: {}}\n";
        let bytes = seed.as_bytes();
        let mut st: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        };
        let alphabet = b"${}:-?[]{}&*<'\\\"\n #,x";
        let t = tempfile::tempdir().unwrap();
        for _ in 0..1500 {
            let mut m = bytes.to_vec();
            for _ in 0..(next() % 5 + 1) {
                let at = (next() as usize) % (m.len() + 1);
                if next() % 2 == 0 && at < m.len() {
                    m.remove(at);
                } else {
                    m.insert(
                        at.min(m.len()),
                        alphabet[(next() as usize) % alphabet.len()],
                    );
                }
            }
            let Ok(text) = std::str::from_utf8(&m) else {
                continue;
            };
            std::fs::write(t.path().join("compose.yaml"), text).unwrap();
            let _ = load(&LoadOptions {
                cwd: t.path().to_path_buf(),
                project_name: Some("m".into()),
                ..Default::default()
            });
        }
    }

    #[test]
    fn bad_files_are_named_with_where_and_what() {
        let e = project(&[("c.yaml", "services:\n  web:\n    image: [\n")], None).unwrap_err();
        assert!(e.to_string().contains("c.yaml:"), "{e}");
        let e = project(&[("c.yaml", "servics:\n  web: {image: x}\n")], None).unwrap_err();
        assert!(e.to_string().contains("did you mean \"services\""), "{e}");
        let e = project(
            &[(
                "c.yaml",
                "services:\n  web: {image: \"${NEED:?set NEED}\"}\n",
            )],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("NEED"), "{e}");
        let e = project(
            &[(
                "c.yaml",
                "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
            )],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
        let e = project(
            &[(
                "c.yaml",
                "services:\n  a: {image: x, volumes: ['nov:/d']}\n",
            )],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nov"), "{e}");
    }
}
