//! A step's cache key and what it does on a miss: `RUN`'s arguments and environment,
//! `COPY`/`ADD`'s sources listed and hashed, `WORKDIR`'s directory, a config step's result.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{key, Plan, PROXY_ARGS};
use crate::copy::{self, CopySpec, Origin, Src};
use crate::dockerfile::{self, Instr, Source, Step};
use crate::layers::View;
use crate::state::State;
use crate::steps::{self, Scope};
use crate::BuildError;

impl Plan<'_> {
    /// A step's cache key and what to do on a miss.
    pub(super) fn prepare(
        &self,
        scope: &Scope,
        step: &Step,
    ) -> Result<(String, Action), BuildError> {
        let parent = scope.state.identity();
        Ok(match &step.instr {
            Instr::Run {
                flags,
                command,
                heredocs,
            } => {
                let mut mounts = Vec::new();
                for (name, value) in flags {
                    match (name.as_str(), value) {
                        ("mount", Some(v)) => mounts.push(v.clone()),
                        ("network", Some(v)) if v == "default" || v == "host" || v == "none" => {}
                        ("security", Some(v)) if v == "sandbox" => {}
                        (other, _) => {
                            return Err(BuildError::Invalid(format!(
                                "RUN: unsupported flag --{other} (RUN takes --mount, --network=default|none|host)"
                            )))
                        }
                    }
                }
                let args = run_args(scope, command, heredocs)?;
                let mut env = scope.run_env();
                for p in PROXY_ARGS {
                    if let Some(v) = self.opts.build_args.get(p) {
                        if !scope.args.contains_key(p) {
                            env.push(format!("{p}={v}"));
                            self.used_args
                                .lock()
                                .expect("not poisoned")
                                .insert(p.to_owned());
                        }
                    }
                }
                let keyed: Vec<&String> = env
                    .iter()
                    .filter(|e| !PROXY_ARGS.iter().any(|p| e.starts_with(&format!("{p}="))))
                    .collect();
                let k = key(&[
                    &parent,
                    "RUN",
                    &serde_json::to_string(&args).expect("serializable"),
                    &serde_json::to_string(&keyed).expect("serializable"),
                    &mounts.join("\n"),
                ]);
                let mut from_layers = BTreeMap::new();
                for m in &mounts {
                    if let Some(from) = m.split(',').find_map(|kv| kv.strip_prefix("from=")) {
                        from_layers.insert(from.to_owned(), self.layers_of(from)?);
                    }
                }
                // What a bound stage holds is part of the key: its layers (content ids).
                let bound: Vec<String> = from_layers
                    .iter()
                    .map(|(k, v)| {
                        let dirs: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
                        format!("{k}={}", dirs.join(":"))
                    })
                    .collect();
                let k = key(&[&k, &bound.join("\n")]);
                (k, Action::Run(args, env, mounts, from_layers))
            }
            Instr::Copy {
                add,
                flags,
                sources,
                dest,
            } => {
                let (origin, spec) = self.copy_spec(scope, *add, flags, sources, dest)?;
                let view = View::new(scope.state.layer_dirs(&self.store));
                let o = match &origin {
                    None => Origin::Context {
                        dir: &self.context,
                        ignore: &self.ignore,
                    },
                    Some(v) => Origin::Image(v.clone()),
                };
                let planned = copy::plan(&o, &spec, &view)?;
                let k = key(&[
                    &parent,
                    if *add { "ADD" } else { "COPY" },
                    &spec.dest,
                    &format!("{:?}{:?}", spec.chown, spec.chmod),
                    &planned.hash,
                ]);
                (k, Action::Copy(origin, spec))
            }
            Instr::Workdir(raw) => {
                let dir = steps::workdir(scope, raw)?;
                (key(&[&parent, "WORKDIR", &dir]), Action::Workdir(dir))
            }
            other => {
                // A config step: what it sets, after expansion, is its key.
                let mut probe = scope.clone();
                steps::apply(&mut probe, other, &step.text)?;
                let cfg =
                    serde_json::to_string(&probe.state.config["config"]).expect("serializable");
                let author = probe.state.config["author"].to_string();
                (
                    key(&[&parent, other.keyword(), &cfg, &author]),
                    Action::Config,
                )
            }
        })
    }

    /// The layers (top first) of a stage (by name or index) or, failing that, an image.
    fn layers_of(&self, from: &str) -> Result<Vec<PathBuf>, BuildError> {
        Ok(match self.stage_ref(from, usize::MAX) {
            Some(i) => self.wait_stage(i)?.layer_dirs(&self.store),
            None => {
                let (_, img) = self
                    .engine
                    .image_for_run(from, self.pull_policy(), &self.opts.pull_options)
                    .map_err(|e| {
                        BuildError::Image(format!(
                            "from={from}: no such stage, and as an image: {e}"
                        ))
                    })?;
                State::of_image(&self.store, &img)?.layer_dirs(&self.store)
            }
        })
    }

    /// The origin and spec of a `COPY`/`ADD`.
    fn copy_spec(
        &self,
        scope: &Scope,
        add: bool,
        flags: &[(String, Option<String>)],
        sources: &[Source],
        dest: &str,
    ) -> Result<(Option<View>, CopySpec), BuildError> {
        let keyword = if add { "ADD" } else { "COPY" };
        let mut from = None;
        let mut chown = None;
        let mut chmod = None;
        let mut checksum = None;
        for (name, value) in flags {
            let v = value.clone().unwrap_or_default();
            match name.as_str() {
                "from" if !add => from = Some(scope.word(&v)?),
                "chown" => chown = Some(scope.word(&v)?),
                "chmod" => {
                    let m = scope.word(&v)?;
                    chmod = Some(
                        u32::from_str_radix(&m, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| {
                                BuildError::Invalid(format!(
                                    "{keyword} --chmod={m}: an octal mode such as 755"
                                ))
                            })?,
                    );
                }
                "link" => {}
                "checksum" if add => checksum = Some(scope.word(&v)?),
                other => {
                    return Err(BuildError::Invalid(format!(
                        "{keyword}: unsupported flag --{other} ({})",
                        if add {
                            "ADD takes --chown, --chmod, --link"
                        } else {
                            "COPY takes --from, --chown, --chmod, --link"
                        }
                    )))
                }
            }
        }
        let origin = match &from {
            None => None,
            Some(f) => Some(match self.stage_ref(f, usize::MAX) {
                Some(i) => {
                    let st = self.wait_stage(i)?;
                    View::new(st.layer_dirs(&self.store))
                }
                None => {
                    let (_, img) = self
                        .engine
                        .image_for_run(f, self.pull_policy(), &self.opts.pull_options)
                        .map_err(|e| {
                            BuildError::Image(format!(
                                "--from={f}: no such stage, and as an image: {e}"
                            ))
                        })?;
                    View::new(State::of_image(&self.store, &img)?.layer_dirs(&self.store))
                }
            }),
        };
        let chown = match chown {
            None => None,
            Some(c) => Some(self.owner(scope, &c)?),
        };
        let mut srcs = Vec::new();
        for s in sources {
            srcs.push(match s {
                Source::Path(p) => {
                    let p = scope.word(p)?;
                    if add && crate::fetch::is_url(&p) {
                        let f = crate::fetch::fetch(
                            &p,
                            &self.store.root().join("tmp"),
                            checksum.as_deref(),
                        )?;
                        srcs.push(Src::Fetched(f));
                        continue;
                    }
                    if add && p.starts_with("git@") {
                        return Err(BuildError::Invalid(format!(
                            "ADD {p}: git sources are not supported; clone the repository into the context and COPY it"
                        )));
                    }
                    Src::Path(p)
                }
                Source::Inline { name, body, expand } => Src::Inline {
                    name: name.clone(),
                    body: if *expand { scope.heredoc(body)? } else { body.clone() },
                },
            });
        }
        let dest = scope.word(dest)?;
        let abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            let wd = scope.state.workdir();
            format!("{}/{dest}", wd.trim_end_matches('/'))
        };
        let abs = if dest.ends_with('/') || dest == "." || dest.ends_with("/.") {
            format!("{}/", abs.trim_end_matches('.').trim_end_matches('/'))
        } else {
            abs
        };
        Ok((
            origin,
            CopySpec {
                sources: srcs,
                dest: abs,
                chown,
                chmod,
                extract: add,
                keyword,
            },
        ))
    }

    /// `--chown=USER[:GROUP]` to ids, names looked up in the stage's own files.
    fn owner(&self, scope: &Scope, spec: &str) -> Result<(u32, u32), BuildError> {
        let dirs = scope.state.layer_dirs(&self.store);
        let (u, g) = spec
            .split_once(':')
            .map_or((spec, None), |(u, g)| (u, Some(g)));
        // A number alone is also the group; a name alone takes its primary group.
        let (uid, primary) = match u.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => {
                let user = corral_engine::users::resolve(u, &dirs)
                    .map_err(|e| BuildError::Invalid(format!("--chown={spec}: {e}")))?;
                (user.uid, user.gid)
            }
        };
        let gid = match g {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    let group = corral_engine::users::read_in_layers(&dirs, "etc/group");
                    corral_engine::users::group_id(g, group.as_deref())
                        .map_err(|e| BuildError::Invalid(format!("--chown={spec}: {e}")))?
                }
            },
        };
        Ok((uid, gid))
    }
}

/// What a step does on a cache miss.
pub(super) enum Action {
    Config,
    Workdir(String),
    Copy(Option<View>, CopySpec),
    Run(
        Vec<String>,
        Vec<String>,
        Vec<String>,
        BTreeMap<String, Vec<PathBuf>>,
    ),
}

/// A `RUN`'s arguments: the exec form as written; the shell form through the stage's shell,
/// a heredoc-only command as the heredoc's script.
pub(super) fn run_args(
    scope: &Scope,
    command: &dockerfile::Command,
    heredocs: &[(String, bool)],
) -> Result<Vec<String>, BuildError> {
    let mut shell = scope.state.shell();
    Ok(match command {
        dockerfile::Command::Exec(v) => {
            if v.is_empty() {
                return Err(BuildError::Invalid("RUN needs a command".into()));
            }
            v.clone()
        }
        dockerfile::Command::Shell(s) => {
            // The parser hands the command without its `<<DELIM` words: a lone heredoc is the
            // script itself (BuildKit); after a command it is that command's standard input,
            // read by the shell up to a delimiter of ours (quoted when the Dockerfile quoted
            // it, so that the shell does not expand the body either).
            let script = match heredocs {
                [] => s.clone(),
                [(body, _)] if s.trim().is_empty() => body.clone(),
                docs => {
                    let mut out = s.trim().to_owned();
                    for (i, (_, expand)) in docs.iter().enumerate() {
                        let d = format!("CORRAL_HEREDOC_{i}");
                        out.push_str(&if *expand {
                            format!(" <<{d}")
                        } else {
                            format!(" <<'{d}'")
                        });
                    }
                    for (i, (body, _)) in docs.iter().enumerate() {
                        out.push('\n');
                        out.push_str(body);
                        if !body.ends_with('\n') {
                            out.push('\n');
                        }
                        out.push_str(&format!("CORRAL_HEREDOC_{i}"));
                    }
                    out
                }
            };
            if script.trim().is_empty() {
                return Err(BuildError::Invalid("RUN needs a command".into()));
            }
            shell.push(script);
            shell
        }
    })
}

pub(super) fn history_of_run(args: &[String]) -> String {
    format!("RUN {}", args.join(" "))
}
