//! Health checks, docker's model: a command run in the container every `interval`, failed by
//! a non-zero exit or by running past `timeout`; `retries` failures in a row make the
//! container `unhealthy`, one success makes it `healthy`; failures during `start_period` do
//! not count while it is still `starting`.
//!
//! The checker is a small process of its own (`corral __health ROOT ID PID`), started by the
//! container's monitor each time the container's process starts and ending when that process
//! does: the monitor forks the container's init and must stay single-threaded, and a check is
//! an `exec` into the container, which leaves the calling process in the container's
//! namespaces — so each check is a `corral exec` child of the checker, in a process group of
//! its own that a timeout ends whole. Results go to `containers/<id>/health.json` (written by
//! rename), and each change of status is an event (`health_status: healthy`).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::{Engine, EngineError, Result};

/// How much of a check's output is kept.
const OUTPUT_LIMIT: usize = 4096;
/// How many results are kept.
const LOG_LENGTH: usize = 5;

/// A container's health check, as docker's image config and flags give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Between checks (docker's default 30 s).
    pub interval_ms: u64,
    /// A check running longer fails (default 30 s).
    pub timeout_ms: u64,
    /// Failures in a row that make it unhealthy (default 3).
    pub retries: u32,
    /// Failures in this first span do not count (default 0).
    pub start_period_ms: u64,
}

/// The check flags (`--health-cmd` ...): each replaces the image's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// `--health-cmd`: run with `/bin/sh -c`.
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<Duration>,
    /// `--health-timeout`.
    pub timeout: Option<Duration>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--health-start-period`.
    pub start_period: Option<Duration>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub disable: bool,
}

/// The image config's `Healthcheck`, in docker's JSON (durations in nanoseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageHealth {
    #[serde(default)]
    test: Vec<String>,
    #[serde(default)]
    interval: u64,
    #[serde(default)]
    timeout: u64,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    start_period: u64,
}

/// Reads `config.Healthcheck` from an image's raw config JSON (oci-spec's types drop it).
pub fn from_image_config(raw: &[u8]) -> Option<(Vec<String>, u64, u64, u32, u64)> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let h: ImageHealth =
        serde_json::from_value(v.get("config")?.get("Healthcheck")?.clone()).ok()?;
    Some((h.test, h.interval, h.timeout, h.retries, h.start_period))
}

/// The check a container gets: the image's, with the flags' values over it.
pub fn resolve(image_raw: Option<&[u8]>, spec: &HealthSpec) -> Result<Option<HealthConfig>> {
    if spec.disable {
        if spec.cmd.is_some() {
            return Err(EngineError::invalid(
                "--no-healthcheck conflicts with --health-cmd: give one",
            ));
        }
        return Ok(None);
    }
    let image = image_raw.and_then(from_image_config);
    let mut test = image.as_ref().map(|i| i.0.clone()).unwrap_or_default();
    if let Some(cmd) = &spec.cmd {
        test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    match test.first().map(String::as_str) {
        None | Some("NONE") => return Ok(None),
        Some("CMD") | Some("CMD-SHELL") if test.len() >= 2 => {}
        Some(other) => {
            return Err(EngineError::invalid(format!(
                "health check test {test:?}: the first word must be CMD, CMD-SHELL or NONE, not {other:?}"
            )))
        }
    }
    let ms = |flag: Option<Duration>, image_ns: Option<u64>, default: u64| {
        flag.map(|d| d.as_millis() as u64)
            .or(image_ns.filter(|n| *n > 0).map(|n| n / 1_000_000))
            .unwrap_or(default)
    };
    let cfg = HealthConfig {
        test,
        interval_ms: ms(spec.interval, image.as_ref().map(|i| i.1), 30_000),
        timeout_ms: ms(spec.timeout, image.as_ref().map(|i| i.2), 30_000),
        retries: spec
            .retries
            .or(image.as_ref().map(|i| i.3).filter(|r| *r > 0))
            .unwrap_or(3),
        start_period_ms: ms(spec.start_period, image.as_ref().map(|i| i.4), 0),
    };
    if cfg.interval_ms == 0 || cfg.timeout_ms == 0 {
        return Err(EngineError::invalid(
            "--health-interval and --health-timeout must be positive durations such as 5s",
        ));
    }
    if cfg.retries == 0 {
        return Err(EngineError::invalid("--health-retries must be at least 1"));
    }
    Ok(Some(cfg))
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// When it started (RFC 3339).
    #[serde(rename = "Start")]
    pub start: String,
    /// When it ended.
    #[serde(rename = "End")]
    pub end: String,
    /// Its exit code; -1 for a timeout or a check that could not run.
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    /// Its output (stdout and stderr), at most 4 KiB.
    #[serde(rename = "Output")]
    pub output: String,
}

/// A container's health, as `inspect` shows it (`State.Health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    /// Failures in a row.
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    /// The last results, oldest first.
    #[serde(rename = "Log")]
    pub log: Vec<Probe>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

const FILE: &str = "health.json";

/// Reads a container's health; `None` before its first start or without a check.
pub fn load(dir: &Path) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
}

/// Sets a container's health to `starting` (a new start).
pub(crate) fn reset(dir: &Path) -> Result<()> {
    save(dir, &Health::default()).map_err(crate::io_err("writing the health of", dir))
}

fn save(dir: &Path, h: &Health) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(h).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, dir.join(FILE))
}

/// Runs the check once in container `id` (through `exe exec`), bounded by its timeout.
fn probe(exe: &Path, root: &Path, id: &str, cfg: &HealthConfig) -> Probe {
    let start = SystemTime::now();
    let argv: Vec<String> = match cfg.test[0].as_str() {
        "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), cfg.test[1..].join(" ")],
        _ => cfg.test[1..].to_vec(),
    };
    let stamp = |t: SystemTime| humantime::format_rfc3339_nanos(t).to_string();
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let (exit_code, output) = match exec_bounded(exe, root, id, &argv, timeout, OUTPUT_LIMIT) {
        Ok(ExecRun::Exited { code, output }) => {
            (code, String::from_utf8_lossy(&output).into_owned())
        }
        Ok(ExecRun::TimedOut) => (
            -1,
            format!(
                "Health check exceeded timeout ({}s)",
                cfg.timeout_ms as f64 / 1000.0
            ),
        ),
        Err(e) => (-1, format!("starting the check: {e}")),
    };
    Probe {
        start: stamp(start),
        end: stamp(SystemTime::now()),
        exit_code,
        output,
    }
}

/// How a bounded exec ended.
#[derive(Debug)]
pub enum ExecRun {
    /// It exited with `code` (-1: killed by a signal), having printed `output` (stdout then
    /// stderr, at most the limit asked for).
    Exited {
        /// The exit code.
        code: i32,
        /// What it printed.
        output: Vec<u8>,
    },
    /// It ran past its timeout and was killed.
    TimedOut,
}

/// Runs `argv` in container `id` through `exe --root ROOT exec`, in a process group of its
/// own, killed (the command in the container first, so that the exec client reaps it) when
/// it runs past `timeout`. What health checks and the node agent's exec probes run.
pub fn exec_bounded(
    exe: &Path,
    root: &Path,
    id: &str,
    argv: &[String],
    timeout: Duration,
    output_limit: usize,
) -> std::io::Result<ExecRun> {
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("exec")
        .arg(id)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    // Output is read on threads so that a chatty command cannot block on a full pipe.
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(output_limit as u64 * 4).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().unwrap_or(-1),
            Ok(None) if Instant::now() >= deadline => {
                // What the exec client started in the container first, so that the client
                // reaps it (killed with it, it would be left to the container's PID 1, which
                // may never reap it); then the client and anything left of its group.
                let client = child.id() as i32;
                kill_group_but(client, client);
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if let Some(pg) = rustix::process::Pid::from_raw(client) {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
                let _ = child.wait();
                let _ = (out.join(), err.join());
                return Ok(ExecRun::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break -1,
        }
    };
    let mut output = out.join().unwrap_or_default();
    output.extend(err.join().unwrap_or_default());
    output.truncate(output_limit);
    Ok(ExecRun::Exited { code, output })
}

/// SIGKILL to every process of process group `pgid` but `spare` (found in `/proc`; the
/// group is one the checker made, so nothing else is in it).
fn kill_group_but(pgid: i32, spare: i32) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == spare {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Field 5 (pgrp) after the command, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<i32>().ok())
            == Some(pgid)
        {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
}

impl Engine {
    /// Runs the check once and records it; the status after it.
    fn check_and_record(
        &self,
        id: &str,
        cfg: &HealthConfig,
        in_start_period: bool,
    ) -> Result<Health> {
        let cs = self.containers()?;
        let dir = cs.dir(id);
        let p = probe(&self.exe, &self.root, id, cfg);
        let mut h = load(&dir).unwrap_or_default();
        let before = h.status.clone();
        if p.exit_code == 0 {
            h.status = "healthy".into();
            h.failing_streak = 0;
        } else if !(in_start_period && h.status == "starting") {
            h.failing_streak += 1;
            if h.failing_streak >= cfg.retries {
                h.status = "unhealthy".into();
            }
        }
        h.log.push(p);
        let n = h.log.len();
        if n > LOG_LENGTH {
            h.log.drain(..n - LOG_LENGTH);
        }
        // The container may have been removed meanwhile: then there is nothing to record.
        if dir.is_dir() {
            save(&dir, &h).map_err(crate::io_err("writing the health of", &dir))?;
        }
        if h.status != before {
            if let Ok(s) = cs.load(id) {
                self.emit(self.container_event(
                    &format!("health_status: {}", h.status),
                    &s,
                    &Record::load(&dir),
                ));
            }
        }
        Ok(h)
    }

    /// `corral healthcheck run`: the check once, now; whether it passed.
    pub fn health_check_now(&self, id: &str) -> Result<bool> {
        let cs = self.containers()?;
        let record = Record::load(&cs.dir(id));
        let Some(cfg) = record.healthcheck else {
            return Err(EngineError::Conflict(format!(
                "container {id} has no health check"
            )));
        };
        let s = cs.load(id)?;
        if s.status != corral_container::Status::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                s.name
            )));
        }
        let h = self.check_and_record(id, &cfg, false)?;
        Ok(h.log.last().is_some_and(|p| p.exit_code == 0))
    }

    /// The checker's loop for the process `pid` of container `id`: checks every interval
    /// while that process runs, then returns.
    pub fn health_loop(&self, id: &str, pid: i32) -> Result<()> {
        let cs = self.containers()?;
        let dir = cs.dir(id);
        let Some(cfg) = Record::load(&dir).healthcheck else {
            return Ok(());
        };
        save(&dir, &Health::default()).map_err(crate::io_err("writing the health of", &dir))?;
        let born = Instant::now();
        let alive = || {
            Path::new(&format!("/proc/{pid}")).exists()
                && cs.load_raw(id).is_ok_and(|s| s.pid == Some(pid))
        };
        loop {
            // Sleep in short steps: a checker must not outlive its container by an interval.
            let until = Instant::now() + Duration::from_millis(cfg.interval_ms);
            while Instant::now() < until {
                if !alive() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
            }
            if !alive() {
                return Ok(());
            }
            let starting = born.elapsed() < Duration::from_millis(cfg.start_period_ms);
            self.check_and_record(id, &cfg, starting)?;
        }
    }
}

/// `corral __health [--detach] ROOT ID PID`: with `--detach`, starts the checker as a process
/// of its own and returns at once (so that the monitor reaps it at once); without, runs it.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let detach = args.first().is_some_and(|a| a == "--detach");
    let rest = if detach { &args[1..] } else { args };
    let (Some(root), Some(id), Some(pid)) = (
        rest.first(),
        rest.get(1).and_then(|s| s.to_str()),
        rest.get(2)
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i32>().ok()),
    ) else {
        eprintln!("usage: corral __health [--detach] ROOT ID PID");
        return 125;
    };
    let Ok(engine) = Engine::current(root) else {
        return 125;
    };
    if detach {
        let spawned = Command::new(engine.exe())
            .arg("__health")
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        return if spawned.is_ok() { 0 } else { 125 };
    }
    match engine.health_loop(id, pid) {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!("health checker of {id}: {e}");
            125
        }
    }
}

/// Starts the checker of a container whose process just started (from its monitor).
pub(crate) fn spawn_checker(root: &Path, id: &str, pid: i32) {
    // The monitor is `corral-monitor` beside `corral`, or `corral __monitor` itself.
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let corral = if me.file_name().is_some_and(|n| n == "corral-monitor") {
        me.with_file_name("corral")
    } else {
        me
    };
    let _ = Command::new(corral)
        .arg("__health")
        .arg("--detach")
        .arg(root)
        .arg(id)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &[u8] = br#"{"config":{"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}}}"#;

    #[test]
    fn flags_override_the_image_check_field_by_field() {
        let c = resolve(Some(IMAGE), &HealthSpec::default())
            .unwrap()
            .unwrap();
        assert_eq!(c.test, vec!["CMD-SHELL", "true"]);
        assert_eq!((c.interval_ms, c.timeout_ms, c.retries), (5000, 30_000, 2));
        let spec = HealthSpec {
            cmd: Some("test -f /ok".into()),
            timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let c = resolve(Some(IMAGE), &spec).unwrap().unwrap();
        assert_eq!(c.test, vec!["CMD-SHELL", "test -f /ok"]);
        assert_eq!((c.interval_ms, c.timeout_ms), (5000, 1000));
        let off = HealthSpec {
            disable: true,
            ..Default::default()
        };
        assert_eq!(resolve(Some(IMAGE), &off).unwrap(), None);
        assert_eq!(resolve(None, &HealthSpec::default()).unwrap(), None);
        let none = br#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#;
        assert_eq!(resolve(Some(none), &HealthSpec::default()).unwrap(), None);
        let bad = HealthSpec {
            cmd: Some("x".into()),
            retries: Some(0),
            ..Default::default()
        };
        assert!(resolve(None, &bad).is_err());
    }
}
