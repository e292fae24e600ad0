//! The instructions that only change the image config (`ENV`, `LABEL`, `WORKDIR`'s setting,
//! `USER`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK`,
//! `ONBUILD`, `MAINTAINER`), with Docker's rules: `ENV` over `ARG` in expansion, a relative
//! `WORKDIR` under the previous one, `ENTRYPOINT` clearing a `CMD` the stage did not set
//! itself, shell forms run by the stage's `SHELL`, `HEALTHCHECK` durations in nanoseconds.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::dockerfile::{Command, Instr};
use crate::expand::{self, ExpandError};
use crate::state::State;
use crate::BuildError;

/// A stage's scope while its steps run.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The image so far.
    pub state: State,
    /// The `ARG`s the stage declared, with their values (`None`: declared, no value).
    pub args: BTreeMap<String, Option<String>>,
    /// Whether the stage set `CMD` itself (then `ENTRYPOINT` keeps it).
    pub cmd_set: bool,
    /// The escape character.
    pub escape: char,
}

impl Scope {
    /// A variable's value for expansion: `ENV` first, then the stage's `ARG`s.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.state
            .env()
            .into_iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(name).cloned().flatten())
    }

    /// Expands one word.
    pub fn word(&self, s: &str) -> Result<String, BuildError> {
        expand::word(s, self.escape, &|n| self.lookup(n)).map_err(expansion)
    }

    /// Expands the variables of a heredoc's body (quotes are text there).
    pub fn heredoc(&self, s: &str) -> Result<String, BuildError> {
        expand::text(s, self.escape, &|n| self.lookup(n)).map_err(expansion)
    }

    /// Expands and splits words.
    pub fn words(&self, s: &str) -> Result<Vec<String>, BuildError> {
        expand::words(s, self.escape, &|n| self.lookup(n)).map_err(expansion)
    }

    /// The build arguments a `RUN` sees in its environment (not those an `ENV` of the same
    /// name hides), sorted.
    pub fn run_env(&self) -> Vec<String> {
        let env = self.state.env();
        self.args
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == *k))
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect()
    }
}

fn expansion(e: ExpandError) -> BuildError {
    BuildError::Invalid(format!("expansion: {e}"))
}

/// A command's arguments with the stage's shell for the shell form.
pub fn command_args(state: &State, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = state.shell();
            v.push(s.clone());
            v
        }
    }
}

/// A Go-style duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn duration_ns(flag: &str, v: &str) -> Result<u64, BuildError> {
    let d = humantime::parse_duration(v).map_err(|e| {
        BuildError::Invalid(format!(
            "HEALTHCHECK --{flag}={v}: {e} (a duration such as 30s or 1m30s)"
        ))
    })?;
    Ok(d.as_nanos() as u64)
}

/// The ports of `EXPOSE` words: `80`, `53/udp`, `8000-8002` (each port), as `PORT/PROTO`.
pub fn ports(words: &[String]) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for w in words {
        let (p, proto) = w.split_once('/').unwrap_or((w, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(BuildError::Invalid(format!(
                "EXPOSE {w}: the protocol is tcp, udp or sctp"
            )));
        }
        let bad = || BuildError::Invalid(format!("EXPOSE {w}: not a port or a range of ports"));
        let (lo, hi) = match p.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let n = p.parse::<u16>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || lo == 0 {
            return Err(bad());
        }
        for n in lo..=hi {
            out.push(format!("{n}/{proto}"));
        }
    }
    Ok(out)
}

/// Applies a config-only instruction to `scope.state`; returns the history text.
pub fn apply(scope: &mut Scope, instr: &Instr, text: &str) -> Result<(), BuildError> {
    match instr {
        Instr::Env(raw) => {
            let pairs =
                expand::pairs(raw, scope.escape, &|n| scope.lookup(n), true).map_err(expansion)?;
            for (k, v) in pairs {
                scope.state.set_env(&k, &v.unwrap_or_default());
            }
        }
        Instr::Label(raw) => {
            let pairs =
                expand::pairs(raw, scope.escape, &|n| scope.lookup(n), true).map_err(expansion)?;
            let cfg = scope.state.cfg();
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in pairs {
                labels[k] = json!(v.unwrap_or_default());
            }
        }
        Instr::User(raw) => {
            let u = scope.word(raw)?;
            if u.is_empty() {
                return Err(BuildError::Invalid("USER needs a user".into()));
            }
            scope.state.cfg().insert("User".into(), json!(u));
        }
        Instr::Expose(raw) => {
            let mut words = Vec::new();
            for r in raw {
                words.extend(scope.words(r)?);
            }
            let ports = ports(&words)?;
            let cfg = scope.state.cfg();
            let set = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !set.is_object() {
                *set = json!({});
            }
            for p in ports {
                set[p] = json!({});
            }
        }
        Instr::Volume(raw) => {
            let mut paths = Vec::new();
            for r in raw {
                paths.extend(scope.words(r)?);
            }
            if paths.iter().any(|p| p.trim().is_empty()) || paths.is_empty() {
                return Err(BuildError::Invalid("VOLUME: a path is empty".into()));
            }
            let cfg = scope.state.cfg();
            let set = cfg.entry("Volumes").or_insert_with(|| json!({}));
            if !set.is_object() {
                *set = json!({});
            }
            for p in paths {
                set[p] = json!({});
            }
        }
        Instr::Stopsignal(raw) => {
            let s = scope.word(raw)?;
            scope.state.cfg().insert("StopSignal".into(), json!(s));
        }
        Instr::Cmd(c) => {
            let args = command_args(&scope.state, c);
            scope.state.cfg().insert("Cmd".into(), json!(args));
            scope.cmd_set = true;
        }
        Instr::Entrypoint(c) => {
            let args = command_args(&scope.state, c);
            let cmd_set = scope.cmd_set;
            let cfg = scope.state.cfg();
            cfg.insert("Entrypoint".into(), json!(args));
            if !cmd_set {
                cfg.remove("Cmd");
            }
        }
        Instr::Shell(v) => {
            if v.is_empty() {
                return Err(BuildError::Invalid(
                    "SHELL needs a JSON array: SHELL [\"/bin/sh\", \"-c\"]".into(),
                ));
            }
            scope.state.cfg().insert("Shell".into(), json!(v));
        }
        Instr::Healthcheck { flags, command } => {
            let hc = match command {
                None => json!({"Test": ["NONE"]}),
                Some(c) => {
                    let test = match c {
                        Command::Exec(v) => {
                            let mut t = vec!["CMD".to_owned()];
                            t.extend(v.iter().cloned());
                            t
                        }
                        Command::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                    };
                    let mut hc = json!({"Test": test});
                    for (name, value) in flags {
                        let v = value.clone().unwrap_or_default();
                        let key = match name.as_str() {
                            "interval" => "Interval",
                            "timeout" => "Timeout",
                            "start-period" => "StartPeriod",
                            "start-interval" => "StartInterval",
                            "retries" => {
                                let n: u64 = v.parse().map_err(|_| {
                                    BuildError::Invalid(format!("HEALTHCHECK --retries={v}: not a number"))
                                })?;
                                hc["Retries"] = json!(n);
                                continue;
                            }
                            other => {
                                return Err(BuildError::Invalid(format!(
                                    "HEALTHCHECK: unknown flag --{other} (--interval, --timeout, --start-period, --start-interval, --retries)"
                                )))
                            }
                        };
                        hc[key] = json!(duration_ns(name, &v)?);
                    }
                    hc
                }
            };
            scope.state.cfg().insert("Healthcheck".into(), hc);
        }
        Instr::Onbuild(trigger) => {
            crate::dockerfile::parse_trigger(trigger)
                .map_err(|e| BuildError::Invalid(format!("ONBUILD: {}", e.message)))?;
            let cfg = scope.state.cfg();
            let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Value::Array(a) = list {
                a.push(json!(trigger.trim()));
            }
        }
        Instr::Maintainer(name) => {
            let n = scope.word(name)?;
            scope.state.config["author"] = json!(n);
        }
        Instr::Workdir(_) => {}
        other => {
            return Err(BuildError::Invalid(format!(
                "{} is not a config instruction",
                other.keyword()
            )))
        }
    }
    let _ = text;
    Ok(())
}

/// Where a `WORKDIR` leads: absolute, cleaned, relative ones under the current one.
pub fn workdir(scope: &Scope, raw: &str) -> Result<String, BuildError> {
    let w = scope.word(raw)?;
    if w.is_empty() {
        return Err(BuildError::Invalid("WORKDIR needs a path".into()));
    }
    let joined = if w.starts_with('/') {
        w
    } else {
        format!("{}/{w}", scope.state.workdir())
    };
    Ok(format!("/{}", crate::ignore::clean(&joined)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            state: State::scratch(),
            args: BTreeMap::from([("V".into(), Some("1".into())), ("U".into(), None)]),
            cmd_set: false,
            escape: '\\',
        }
    }

    #[test]
    fn env_wins_over_arg_and_run_env_leaves_hidden_args_out() {
        let mut s = scope();
        assert_eq!(s.word("$V").unwrap(), "1");
        apply(&mut s, &Instr::Env("V=2 W=$V".into()), "").unwrap();
        assert_eq!(s.word("$V $W").unwrap(), "2 1");
        assert!(s.run_env().is_empty());
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let mut s = scope();
        s.state.cfg().insert("Cmd".into(), json!(["base"]));
        apply(&mut s, &Instr::Entrypoint(Command::Shell("run".into())), "").unwrap();
        assert!(s.state.get("Cmd").is_null());
        assert_eq!(s.state.get("Entrypoint"), &json!(["/bin/sh", "-c", "run"]));
        apply(&mut s, &Instr::Cmd(Command::Exec(vec!["x".into()])), "").unwrap();
        apply(
            &mut s,
            &Instr::Entrypoint(Command::Exec(vec!["e".into()])),
            "",
        )
        .unwrap();
        assert_eq!(s.state.get("Cmd"), &json!(["x"]));
    }

    #[test]
    fn ports_healthcheck_and_workdir() {
        assert_eq!(
            ports(&["80".into(), "53/udp".into(), "8000-8001".into()]).unwrap(),
            vec!["80/tcp", "53/udp", "8000/tcp", "8001/tcp"]
        );
        assert!(ports(&["http".into()]).is_err());
        let mut s = scope();
        apply(
            &mut s,
            &Instr::Healthcheck {
                flags: vec![
                    ("interval".into(), Some("1m30s".into())),
                    ("retries".into(), Some("3".into())),
                ],
                command: Some(Command::Shell("true".into())),
            },
            "",
        )
        .unwrap();
        assert_eq!(
            s.state.get("Healthcheck")["Interval"],
            json!(90_000_000_000u64)
        );
        assert_eq!(
            s.state.get("Healthcheck")["Test"],
            json!(["CMD-SHELL", "true"])
        );
        s.state.cfg().insert("WorkingDir".into(), json!("/a"));
        assert_eq!(workdir(&s, "b/../c").unwrap(), "/a/c");
        assert_eq!(workdir(&s, "/x/").unwrap(), "/x");
    }
}
