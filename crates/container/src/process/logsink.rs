//! Where the monitor writes a container's output (`--log-driver`, `--log-opt`):
//!
//! - `json-file` (the default): docker's json lines (`log`, `stream`, `time`) in `ctr.log`;
//!   with `max-size`, the file is rotated when it reaches it — `ctr.log` to `ctr.log.1` and
//!   so on, keeping `max-file` files in all (docker's rule: 1 means the file starts over).
//! - `none`: nothing is kept (`logs` says so, as docker's does).
//! - `journald`: one journal entry per line over the journal's native socket, with docker's
//!   fields (`CONTAINER_ID`, `CONTAINER_ID_FULL`, `CONTAINER_NAME`, `CONTAINER_TAG`,
//!   `SYSLOG_IDENTIFIER`, `PRIORITY` 6 for stdout and 3 for stderr); `journalctl
//!   CONTAINER_NAME=web` reads them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::config::{LogConfig, LogDriver};

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// An open log.
pub enum LogSink {
    /// `none`.
    Discard,
    /// `json-file`.
    File {
        /// `ctr.log`.
        path: PathBuf,
        /// Open for appending (`None` if it could not be opened).
        file: Option<File>,
        /// Its size now.
        size: u64,
        /// Rotate at this size.
        max_size: Option<u64>,
        /// Files kept in all, the current one included.
        max_file: u32,
    },
    /// `journald`.
    Journal {
        /// Unbound, sending to [`JOURNAL_SOCKET`].
        socket: UnixDatagram,
        /// The fields every entry carries (`KEY=VALUE\n` lines).
        fields: Vec<u8>,
    },
}

impl LogSink {
    /// Opens the log of container `id` (named `name`) in `dir` as `cfg` says.
    pub fn open(cfg: &LogConfig, dir: &Path, id: &str, name: &str) -> LogSink {
        match cfg.driver {
            LogDriver::None => LogSink::Discard,
            LogDriver::JsonFile => {
                let path = dir.join("ctr.log");
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .ok();
                let size = file
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .map_or(0, |m| m.len());
                LogSink::File {
                    path,
                    file,
                    size,
                    max_size: cfg.max_size,
                    max_file: cfg.max_file.unwrap_or(1).max(1),
                }
            }
            LogDriver::Journald => match UnixDatagram::unbound() {
                Ok(socket) => {
                    let short = &id[..id.len().min(12)];
                    let tag = cfg.tag.clone().unwrap_or_else(|| short.to_owned());
                    let fields = format!(
                        "CONTAINER_ID={short}\nCONTAINER_ID_FULL={id}\nCONTAINER_NAME={name}\nCONTAINER_TAG={tag}\nSYSLOG_IDENTIFIER={tag}\n"
                    );
                    LogSink::Journal {
                        socket,
                        fields: fields.into_bytes(),
                    }
                }
                Err(_) => LogSink::Discard,
            },
        }
    }

    /// Writes whole lines (each with its newline, but maybe the last at the stream's end) of
    /// `stream`, written at `time` (RFC 3339).
    pub fn write(&mut self, stream: &str, lines: &[Vec<u8>], time: &str) {
        match self {
            LogSink::Discard => {}
            LogSink::File {
                path,
                file,
                size,
                max_size,
                max_file,
            } => {
                for line in lines {
                    let entry = serde_json::json!({
                        "log": String::from_utf8_lossy(line),
                        "stream": stream,
                        "time": time,
                    });
                    let mut out = serde_json::to_vec(&entry).expect("json");
                    out.push(b'\n');
                    // Rotated before a line would take the file past max-size (a line longer
                    // than that gets a file of its own), as docker's json-file does.
                    if max_size.is_some_and(|m| *size > 0 && *size + out.len() as u64 > m) {
                        *file = rotate(path, *max_file);
                        *size = 0;
                    }
                    if let Some(f) = file.as_mut() {
                        if f.write_all(&out).is_ok() {
                            *size += out.len() as u64;
                        }
                    }
                }
            }
            LogSink::Journal { socket, fields } => {
                let priority = if stream == "stderr" { 3 } else { 6 };
                for line in lines {
                    let text = line.strip_suffix(b"\n").unwrap_or(line);
                    let mut msg = fields.clone();
                    msg.extend_from_slice(format!("PRIORITY={priority}\n").as_bytes());
                    // The binary form: the text may hold any byte but a newline's meaning.
                    msg.extend_from_slice(b"MESSAGE\n");
                    msg.extend_from_slice(&(text.len() as u64).to_le_bytes());
                    msg.extend_from_slice(text);
                    msg.push(b'\n');
                    let _ = socket.send_to(&msg, JOURNAL_SOCKET);
                }
            }
        }
    }
}

/// Shifts `path.N-1` to `path.N` ... `path` to `path.1`, dropping what passes `max_file`
/// files, and opens a fresh `path`.
fn rotate(path: &Path, max_file: u32) -> Option<File> {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    if max_file <= 1 {
        let _ = std::fs::remove_file(path);
    } else {
        let _ = std::fs::remove_file(numbered(max_file - 1));
        for n in (1..max_file - 1).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(path, numbered(1));
    }
    OpenOptions::new().create(true).append(true).open(path).ok()
}

/// The rotated files of a json-file log at `path`, oldest first (`path.N` ... `path.1`).
pub fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1.. {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_size: u64, max_file: u32) -> LogConfig {
        LogConfig {
            driver: LogDriver::JsonFile,
            max_size: Some(max_size),
            max_file: Some(max_file),
            tag: None,
        }
    }

    #[test]
    fn json_file_rotates_keeping_max_file_files() {
        let d = tempfile::tempdir().unwrap();
        let mut s = LogSink::open(&cfg(200, 3), d.path(), "abc", "n");
        for i in 0..40 {
            s.write("stdout", &[format!("line {i}\n").into_bytes()], "t");
        }
        let path = d.path().join("ctr.log");
        let olds = rotated(&path);
        assert_eq!(olds.len(), 2, "max-file 3: the log and two old ones");
        assert!(!d.path().join("ctr.log.3").exists());
        for p in olds.iter().chain([&path]) {
            assert!(
                std::fs::metadata(p).unwrap().len() < 200 + 64,
                "{p:?} near max-size"
            );
        }
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line 39"), "{last}");
    }

    #[test]
    fn one_file_starts_over() {
        let d = tempfile::tempdir().unwrap();
        let mut s = LogSink::open(&cfg(100, 1), d.path(), "abc", "n");
        for i in 0..20 {
            s.write("stderr", &[format!("line {i}\n").into_bytes()], "t");
        }
        assert!(rotated(&d.path().join("ctr.log")).is_empty());
        let text = std::fs::read_to_string(d.path().join("ctr.log")).unwrap();
        assert!(!text.contains("line 0\\n"), "{text}");
    }
}
