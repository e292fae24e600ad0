//! Temporary and trash names, and the sweep of what a crash left of them.
//!
//! Objects on disk (a container's directory, a volume) come into existence in one atomic
//! step: they are built under a temporary name and renamed into place. They go away the same
//! way, in reverse: renamed to a trash name first (from then on they do not exist), then
//! deleted. A process killed between the two steps leaves a temporary or trash entry behind.
//!
//! Such entries are named `.<what>.tmp-<pid>-<start>-<rand>` or `.<what>.rm-<pid>-<start>-
//! <rand>`: the pid and start time (clock ticks since boot, `/proc/PID/stat` field 22) of the
//! process that writes or deletes it. [`sweep`] removes those whose process is gone — provably:
//! a pid that runs with another start time is a reused pid, not the writer — so a sweep never
//! takes a file from under a command that is still writing it. Entries without a readable tag
//! (left by older versions) are swept once they are an hour old.
//!
//! Every name starts with a dot, and the names of containers (64 hex digits) and volumes
//! (`[a-zA-Z0-9]...`) never do, so no object can be mistaken for a leftover.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::state::process_start_time;

/// A temporary entry (being built).
pub const TMP: &str = "tmp";
/// A trash entry (being deleted).
pub const RM: &str = "rm";

/// How old an entry without a tag must be before a sweep takes it.
const UNTAGGED_AGE: Duration = Duration::from_secs(3600);

/// `<pid>-<start>` of this process.
fn own_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id() as i32;
        format!("{pid}-{}", process_start_time(pid).unwrap_or(0))
    })
}

/// A fresh name `.<what>.<kind>-<pid>-<start>-<rand>` for an entry of this process.
pub fn name(what: &str, kind: &str) -> String {
    format!(".{what}.{kind}-{}-{}", own_tag(), random_hex())
}

/// A fresh temporary or trash path in `dir` (see [`name`]).
pub fn path(dir: &Path, what: &str, kind: &str) -> PathBuf {
    dir.join(name(what, kind))
}

fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 6];
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    hex::encode(b)
}

/// The writer's pid and start time in a tagged name, if it has a tag.
fn tag_of(name: &str) -> Option<(i32, u64)> {
    let at = [".tmp-", ".rm-"]
        .iter()
        .filter_map(|m| name.rfind(m).map(|i| i + m.len()))
        .max()?;
    let mut parts = name[at..].split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((pid, start))
}

/// Whether a process with this pid and start time still runs.
pub fn alive(pid: i32, start: u64) -> bool {
    process_start_time(pid) == Some(start)
}

/// Whether the leftover `name` (an entry of a directory being swept) may be removed: it is
/// one of ours (starts with a dot, carries a temporary or trash marker) and its writer is
/// gone.
pub fn is_stale(name: &str, path: &Path) -> bool {
    if !name.starts_with('.') || !(name.contains(".tmp") || name.contains(".rm-")) {
        return false;
    }
    match tag_of(name) {
        Some((pid, start)) => !alive(pid, start),
        None => age(path).is_some_and(|a| a >= UNTAGGED_AGE),
    }
}

/// Time since the entry last changed (ctime: a rename counts).
fn age(path: &Path) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path).ok()?;
    let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64);
    SystemTime::now().duration_since(changed).ok()
}

/// Removes a file or a directory tree; a missing entry is not an error. What is mounted in
/// the tree is taken off first, so that the delete never reaches into another filesystem (a
/// bound host directory); if a mount stays, nothing is deleted.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            crate::mountinfo::unmount_under(path).and_then(|()| fs::remove_dir_all(path))
        }
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes the stale temporary and trash entries of `dir` (see the module's doc); returns what
/// it removed. Each is first renamed to a trash name of this process, so that two sweeps never
/// delete one tree together, and a sweep killed midway leaves an entry the next one takes.
pub fn sweep(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let Some(n) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let p = e.path();
        if !is_stale(&n, &p) {
            continue;
        }
        let what = n.trim_start_matches('.');
        let what = what.split(".tmp").next().unwrap_or(what);
        let what = what.split(".rm-").next().unwrap_or(what);
        let mine = path(dir, what, RM);
        if fs::rename(&p, &mine).is_err() {
            // Another sweep took it.
            continue;
        }
        match remove_any(&mine) {
            Ok(()) => {
                tracing::info!(path = %p.display(), "removed what a crashed command left");
                removed.push(p);
            }
            Err(err) => {
                tracing::warn!(path = %mine.display(), %err, "removing a leftover");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_writer() {
        let n = name("abc", TMP);
        assert!(n.starts_with(".abc.tmp-"), "{n}");
        let (pid, start) = tag_of(&n).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert!(alive(pid, start));
        assert_eq!(tag_of(".x.tmp-1.y.rm-12-34-ff"), Some((12, 34)));
        assert_eq!(tag_of(".state.json.tmp"), None);
    }

    #[test]
    fn sweep_takes_only_what_a_gone_writer_left() {
        let d = tempfile::tempdir().unwrap();
        // Ours, in progress.
        let live = path(d.path(), "live", TMP);
        fs::create_dir_all(live.join("sub")).unwrap();
        // A dead writer's: pid 0 never runs a user process with this start time.
        let dead_dir = d.path().join(".vol.tmp-999999999-1-aa");
        fs::create_dir_all(dead_dir.join("_data/x")).unwrap();
        let dead_file = d.path().join(".ipam.json.tmp-999999999-5-1");
        fs::write(&dead_file, b"{").unwrap();
        let dead_trash = d.path().join(".vol.rm-999999999-7-bb");
        fs::create_dir(&dead_trash).unwrap();
        // A reused pid: ours, with another start time.
        let reused = d.path().join(format!(".v.tmp-{}-1-cc", std::process::id()));
        fs::create_dir(&reused).unwrap();
        // Objects and young untagged leftovers are kept.
        fs::create_dir(d.path().join("vol")).unwrap();
        fs::write(d.path().join(".state.json.tmp"), b"").unwrap();
        let mut gone = sweep(d.path());
        gone.sort();
        let mut want = vec![dead_dir, dead_file, dead_trash, reused];
        want.sort();
        assert_eq!(gone, want);
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let live_name = live.file_name().unwrap().to_str().unwrap().to_owned();
        let mut expect = vec![".state.json.tmp".to_owned(), live_name, "vol".to_owned()];
        expect.sort();
        assert_eq!(left, expect);
    }
}
