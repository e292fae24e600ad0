//! Events: what happened to containers, VMs, images, networks and volumes, in order, for
//! `corral events` and library callers (the node agent builds pod status from them).
//!
//! There is no daemon to hold a stream, so the journal is a file, `ROOT/events.jsonl`: one
//! JSON object per line, appended with `O_APPEND` in a single `write(2)` (the kernel keeps
//! appends to a local file whole and ordered), by whichever process saw the event — the CLI,
//! a container's monitor (`die`, `oom`), a health checker. Readers follow the file. When it
//! passes [`ROTATE_BYTES`] it is renamed to `events.jsonl.1` under a lock (one old generation
//! kept), so a follower that finds the file replaced starts on the new one.
//!
//! Recording an event never fails the operation it describes: a journal that cannot be
//! written is logged and skipped.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The journal is rotated past this size.
pub const ROTATE_BYTES: u64 = 8 << 20;

/// One event, in the shape `docker events --format '{{json .}}'` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `container`, `vm`, `image`, `network`, `volume`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `oom`, `stop`, `kill`, `destroy`, `restart`, `pause`,
    /// `unpause`, `rename`, `health_status`, `pull`, `tag`, `untag`, `delete`, `connect`,
    /// `disconnect`, `remove`, `mount`...
    #[serde(rename = "Action")]
    pub action: String,
    /// The object: its id and attributes (`name`, `image`, `exitCode`, labels ...).
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Seconds since the epoch.
    pub time: u64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: u128,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Its id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its attributes.
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event now.
    pub fn new(kind: &str, action: &str, id: &str) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Event {
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor {
                id: id.to_owned(),
                attributes: BTreeMap::new(),
            },
            time: now.as_secs(),
            time_nano: now.as_nanos(),
        }
    }

    /// Adds an attribute.
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Self {
        self.actor.attributes.insert(k.to_owned(), v.into());
        self
    }

    /// Adds the labels as attributes, as docker does.
    pub fn labels(mut self, labels: &BTreeMap<String, String>) -> Self {
        for (k, v) in labels {
            self.actor
                .attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self
    }
}

/// The journal of one state root.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal under `root`.
    pub fn new(root: &Path) -> Self {
        Journal {
            path: root.join("events.jsonl"),
        }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `e`; failures are logged, never returned.
    pub fn record(&self, e: &Event) {
        if let Err(err) = self.append(e) {
            tracing::warn!(path = %self.path.display(), "recording an event: {err}");
        }
    }

    fn append(&self, e: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        if f.metadata()?.len() > ROTATE_BYTES {
            self.rotate(&f)?;
        }
        Ok(())
    }

    /// Renames a full journal away, once: under a lock, and only if it is still the file
    /// this writer appended to.
    fn rotate(&self, f: &std::fs::File) -> std::io::Result<()> {
        let lock = std::fs::File::create(self.path.with_extension("lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let mine = f.metadata()?.ino();
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == mine) {
            std::fs::rename(&self.path, self.path.with_extension("jsonl.1"))?;
        }
        Ok(())
    }

    /// The events recorded so far (the rotated generation first) that `keep` accepts.
    pub fn read(&self, keep: &dyn Fn(&Event) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        for p in [self.path.with_extension("jsonl.1"), self.path.clone()] {
            if let Ok(f) = std::fs::File::open(&p) {
                for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                    if let Ok(e) = serde_json::from_str::<Event>(&line) {
                        if keep(&e) {
                            out.push(e);
                        }
                    }
                }
            }
        }
        out
    }

    /// Calls `emit` with each event that `keep` accepts, first those recorded before (when
    /// `past`), then every new one as it is recorded, until `emit` returns false or `until`
    /// passes.
    pub fn follow(
        &self,
        past: bool,
        until: Option<SystemTime>,
        keep: &dyn Fn(&Event) -> bool,
        emit: &mut dyn FnMut(&Event) -> bool,
    ) -> std::io::Result<()> {
        // The file is followed through an open handle: a rotation renames it away, and what
        // was appended to it before is still read from the handle before the new file.
        let mut cur = std::fs::File::open(&self.path).ok();
        if past {
            let old = self.path.with_extension("jsonl.1");
            if let Ok(f) = std::fs::File::open(old) {
                for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Event>(&line) {
                        Ok(e) if keep(&e) && !emit(&e) => return Ok(()),
                        _ => {}
                    }
                }
            }
        } else if let Some(f) = cur.as_mut() {
            f.seek(SeekFrom::End(0))?;
        }
        let mut partial = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if let Some(f) = cur.as_mut() {
                f.read_to_end(&mut buf)?;
            }
            if buf.is_empty() {
                if until.is_some_and(|u| SystemTime::now() >= u) {
                    return Ok(());
                }
                let on_disk = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
                let held = cur
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .map(|m| m.ino());
                if on_disk.is_some() && on_disk != held {
                    cur = std::fs::File::open(&self.path).ok();
                    partial.clear();
                    continue;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            partial.extend_from_slice(&buf);
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                    if keep(&e) && !emit(&e) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `--filter` of `events`: `type=`, `event=` (or `action=`), `container=`, `image=`,
/// `label=K[=V]`, `network=`, `volume=`; one key given twice matches either value, different
/// keys must all match (docker's rule).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    by: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// Parses `KEY=VALUE` filters.
    pub fn parse(filters: &[String]) -> Result<Self, crate::EngineError> {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                crate::EngineError::invalid(format!("--filter {f:?}: the form is KEY=VALUE"))
            })?;
            let k = match k {
                "action" => "event",
                k => k,
            };
            if !matches!(
                k,
                "type" | "event" | "container" | "image" | "label" | "network" | "volume" | "vm"
            ) {
                return Err(crate::EngineError::invalid(format!(
                    "--filter {f:?}: unknown key {k:?} (use type, event, container, image, label, network, volume, vm)"
                )));
            }
            by.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(EventFilter { by })
    }

    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        self.by.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => e.kind == *v,
                "event" => e.action == *v || e.action.split(':').next() == Some(v),
                "container" | "vm" | "network" | "volume" => {
                    (e.kind == *k || (k == "network" && e.kind == "container"))
                        && (e.actor.id.starts_with(v.as_str())
                            || attr("name") == Some(v)
                            || (k == "network" && attr("network") == Some(v)))
                }
                "image" => attr("image") == Some(v) || (e.kind == "image" && e.actor.id == *v),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => attr(lk) == Some(lv),
                    None => attr(v).is_some(),
                },
                _ => false,
            })
        })
    }
}

/// Parses `--since`/`--until`: RFC 3339, Unix seconds (with fraction), or a duration before
/// now (`10m`, `1h30m`).
pub fn parse_time(s: &str) -> Result<SystemTime, crate::EngineError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now() - d);
    }
    Err(crate::EngineError::invalid(format!(
        "time {s:?}: give RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or a duration such as 10m"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_append_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        j.record(&Event::new("container", "start", "abc123").attr("name", "web"));
        j.record(
            &Event::new("container", "die", "abc123")
                .attr("name", "web")
                .attr("exitCode", "3"),
        );
        j.record(&Event::new("network", "create", "n1").attr("name", "front"));
        let f = EventFilter::parse(&["type=container".into(), "event=die".into()]).unwrap();
        let got = j.read(&|e| f.matches(e));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].actor.attributes["exitCode"], "3");
        let f = EventFilter::parse(&["container=web".into()]).unwrap();
        assert_eq!(j.read(&|e| f.matches(e)).len(), 2);
        assert!(EventFilter::parse(&["colour=red".into()]).is_err());
    }

    #[test]
    fn follow_sees_new_events_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        j.record(&Event::new("container", "create", "old"));
        let j2 = j.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            j2.record(&Event::new("container", "start", "new1"));
            std::fs::rename(j2.path(), j2.path().with_extension("jsonl.1")).unwrap();
            j2.record(&Event::new("container", "start", "new2"));
        });
        let mut seen = Vec::new();
        j.follow(
            false,
            Some(SystemTime::now() + Duration::from_secs(5)),
            &|_| true,
            &mut |e| {
                seen.push(e.actor.id.clone());
                seen.len() < 2
            },
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(seen, vec!["new1", "new2"]);
    }

    #[test]
    fn times_parse() {
        assert!(parse_time("10m").is_ok());
        assert!(parse_time("1700000000").is_ok());
        assert!(parse_time("2026-01-02T15:04:05Z").is_ok());
        assert!(parse_time("yesterday-ish").is_err());
    }
}
