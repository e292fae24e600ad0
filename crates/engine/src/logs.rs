//! Reading a workload's log: docker's json-file lines (`log`, `stream`, `time`) that the
//! container monitor writes, or a VM's plain console text; the last N lines, a time window,
//! and following what comes while the workload runs.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `stdout` or `stderr` (a console's lines are `stdout`).
    pub stream: String,
    /// When it was written (RFC 3339 with nanoseconds); empty for a console's lines.
    pub time: String,
    /// The text, with its newline when it had one.
    pub text: String,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep following while the workload runs.
    pub follow: bool,
    /// Only the last N lines (of those in the window).
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Only lines written before this time.
    pub until: Option<SystemTime>,
}

/// The lines of a json-file log at `path`, as `opts` says; `running` tells whether more may
/// come.
pub fn follow_json(
    path: &Path,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&LogLine) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let parse = |l: &str| -> Option<LogLine> {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        Some(LogLine {
            stream: v["stream"].as_str().unwrap_or("stdout").to_owned(),
            time: v["time"].as_str().unwrap_or("").to_owned(),
            text: v["log"].as_str().unwrap_or("").to_owned(),
        })
    };
    let in_window = |l: &LogLine| {
        if opts.since.is_none() && opts.until.is_none() {
            return true;
        }
        let Ok(t) = humantime::parse_rfc3339_weak(&l.time) else {
            return true;
        };
        opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t < u)
    };
    follow_lines(path, opts, running, false, &mut |lines| {
        for l in lines.iter().filter_map(|l| parse(l)).filter(in_window) {
            emit(&l)?;
        }
        Ok(())
    })
}

/// The lines of a plain text log (a VM's console), as [`follow_json`] reads a json-file one
/// (without a time window: console lines carry no time), byte for byte: a last line that has
/// no newline yet (a login or shell prompt) is written as it is, and followed on from there.
pub fn follow_raw(
    path: &Path,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&LogLine) -> std::io::Result<()>,
) -> std::io::Result<()> {
    follow_lines(path, opts, running, true, &mut |lines| {
        for l in lines {
            emit(&LogLine {
                stream: "stdout".into(),
                time: String::new(),
                text: (*l).to_owned(),
            })?;
        }
        Ok(())
    })
}

/// Hands `emit` the log's lines, then (following) those that come. `partial`: the lines keep
/// their endings and the text after the last newline is handed over too (a console's
/// prompt), up to a whole UTF-8 character; otherwise lines come without their endings and a
/// partial last line (a record being written) waits until it is whole.
fn follow_lines(
    path: &Path,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    partial: bool,
    emit: &mut dyn FnMut(&[&str]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut offset = 0u64;
    let mut first = true;
    loop {
        if opts.until.is_some_and(|u| SystemTime::now() >= u) && !first {
            return Ok(());
        }
        let mut data = std::fs::read(path).unwrap_or_default();
        if (data.len() as u64) < offset {
            // Rotated (`--log-opt max-size`): the new file is read from its start.
            offset = 0;
        }
        // The first read takes the rotated files before the current one, oldest first.
        let mut older = 0;
        if first {
            let mut all = Vec::new();
            for p in corral_container::process::logsink::rotated(path) {
                all.extend(std::fs::read(&p).unwrap_or_default());
                if all.last().is_some_and(|&b| b != b'\n') {
                    all.push(b'\n');
                }
            }
            older = all.len();
            all.extend_from_slice(&data);
            data = all;
        }
        if (data.len() as u64) > offset {
            let chunk = &data[offset as usize..];
            let end = if partial {
                // All of it, but a character cut in two waits for its other bytes.
                match std::str::from_utf8(chunk) {
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    _ => chunk.len(),
                }
            } else {
                // Only whole lines; a partial last line is read next time.
                chunk.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
            };
            let text = String::from_utf8_lossy(&chunk[..end]);
            let mut lines: Vec<&str> = if partial {
                text.split_inclusive('\n').collect()
            } else {
                text.lines().collect()
            };
            if first {
                if let Some(n) = opts.tail {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
            }
            emit(&lines)?;
            offset += end.saturating_sub(older) as u64;
        }
        first = false;
        if !opts.follow {
            return Ok(());
        }
        if running() {
            std::thread::sleep(Duration::from_millis(100));
        } else if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) <= offset {
            return Ok(());
        }
    }
}

/// A container's log as its `--log-driver` keeps it: json-file lines (with the rotated files
/// first), the journal's entries for it (`journalctl`), or nothing to read (`none`: docker's
/// refusal).
pub fn follow_container(
    dir: &Path,
    id: &str,
    log: &corral_container::config::LogConfig,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&LogLine) -> std::io::Result<()>,
) -> crate::Result<()> {
    use corral_container::config::LogDriver;
    match log.driver {
        LogDriver::JsonFile => follow_json(&dir.join("ctr.log"), opts, running, emit)
            .map_err(crate::io_err("reading the log in", dir)),
        LogDriver::None => Err(crate::EngineError::invalid(
            "configured logging driver does not support reading (the container runs with --log-driver none)",
        )),
        LogDriver::Journald => follow_journal(id, opts, running, emit),
    }
}

/// The journal's entries of container `id`, through `journalctl -o json`; following polls
/// with the last entry's cursor.
fn follow_journal(
    id: &str,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&LogLine) -> std::io::Result<()>,
) -> crate::Result<()> {
    let mut cursor: Option<String> = None;
    let mut first = true;
    loop {
        let mut cmd = std::process::Command::new("journalctl");
        cmd.args([
            "--no-pager",
            "-o",
            "json",
            &format!("CONTAINER_ID_FULL={id}"),
        ]);
        match &cursor {
            Some(c) => {
                cmd.arg(format!("--after-cursor={c}"));
            }
            None => {
                if let Some(n) = opts.tail {
                    cmd.arg(format!("--lines={n}"));
                }
                let secs = |t: SystemTime| {
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                };
                if let Some(s) = opts.since {
                    cmd.arg(format!("--since=@{}", secs(s)));
                }
                if let Some(u) = opts.until {
                    cmd.arg(format!("--until=@{}", secs(u)));
                }
            }
        }
        let out = cmd.output().map_err(|e| {
            crate::EngineError::invalid(format!(
                "reading the journal (the container logs to journald): journalctl: {e}"
            ))
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut any = false;
        for l in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            any = true;
            cursor = v["__CURSOR"].as_str().map(str::to_owned).or(cursor);
            let micros: u64 = v["__REALTIME_TIMESTAMP"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let time = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
            emit(&LogLine {
                stream: if v["PRIORITY"] == "3" {
                    "stderr"
                } else {
                    "stdout"
                }
                .into(),
                time: humantime::format_rfc3339_nanos(time).to_string(),
                text: format!("{}\n", v["MESSAGE"].as_str().unwrap_or("")),
            })
            .map_err(crate::io_err("writing the log", Path::new("-")))?;
        }
        if !opts.follow || (!first && !any && !running()) {
            return Ok(());
        }
        first = false;
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(content: &[u8], tail: Option<usize>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, content).unwrap();
        let opts = LogOptions {
            tail,
            ..LogOptions::default()
        };
        let mut out = String::new();
        follow_raw(&path, &opts, &|| false, &mut |l| {
            out.push_str(&l.text);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_console_prompt_without_a_newline_is_shown() {
        let log = b"Debian GNU/Linux 12 web ttyS0\r\n\r\nweb login: ";
        assert_eq!(raw(log, None), String::from_utf8_lossy(log));
        assert_eq!(raw(log, Some(1)), "web login: ");
        assert_eq!(raw(log, Some(2)), "\r\nweb login: ");
        // A character cut in two at the end waits for its other bytes.
        assert_eq!(raw("ok\n\u{e9}".as_bytes(), None), "ok\n\u{e9}");
        assert_eq!(raw(&"ok\n\u{e9}".as_bytes()[..4], None), "ok\n");
    }

    #[test]
    fn a_json_record_being_written_waits_until_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(
            &path,
            "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}\n{\"log\":\"b",
        )
        .unwrap();
        let mut out = Vec::new();
        follow_json(&path, &LogOptions::default(), &|| false, &mut |l| {
            out.push(l.text.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(out, ["a\n"]);
    }
}
