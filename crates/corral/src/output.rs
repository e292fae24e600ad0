//! Output shared by the command groups: sizes as docker prints them, and logs.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use corral_engine::logs::LogOptions;

/// Bytes as docker prints them: decimal units, up to three decimals (`4.096kB`, `1.5MB`).
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        let n = format!("{v:.3}");
        format!(
            "{}{}",
            n.trim_end_matches('0').trim_end_matches('.'),
            UNITS[i]
        )
    }
}

/// Prints a log as `opts` says: json-file lines to stdout or stderr by their stream (with
/// their times), or a console's plain lines.
pub fn print_log(
    path: &Path,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    timestamps: bool,
    raw: bool,
) -> Result<()> {
    let mut emit = emitter(timestamps);
    if raw {
        corral_engine::logs::follow_raw(path, opts, running, &mut emit)?;
    } else {
        corral_engine::logs::follow_json(path, opts, running, &mut emit)?;
    }
    Ok(())
}

/// Prints container `id`'s log as its `--log-driver` keeps it.
pub fn print_container_log(
    engine: &corral_engine::Engine,
    id: &str,
    opts: &LogOptions,
    running: &dyn Fn() -> bool,
    timestamps: bool,
) -> Result<()> {
    let cs = engine.containers()?;
    let log = cs.config(id)?.log;
    let mut emit = emitter(timestamps);
    corral_engine::logs::follow_container(&cs.dir(id), id, &log, opts, running, &mut emit)?;
    Ok(())
}

/// Writes a log line to stdout or stderr by its stream, with its time if asked.
fn emitter(timestamps: bool) -> impl FnMut(&corral_engine::logs::LogLine) -> std::io::Result<()> {
    move |l: &corral_engine::logs::LogLine| -> std::io::Result<()> {
        if l.stream == "stderr" {
            let mut err = std::io::stderr().lock();
            if timestamps {
                write!(err, "{} ", l.time)?;
            }
            err.write_all(l.text.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            if timestamps && !l.time.is_empty() {
                write!(out, "{} ", l.time)?;
            }
            out.write_all(l.text.as_bytes())?;
            out.flush()
        }
    }
}

/// A `--format` Go template as docker's commands take it (`\t` and `\n` written out).
pub fn template(src: &str) -> Result<corral_engine::template::Template> {
    Ok(corral_engine::template::Template::parse(
        &src.replace("\\t", "\t").replace("\\n", "\n"),
    )?)
}

/// `top`'s table of a container's processes.
pub fn print_processes(procs: &[corral_container::container_stats::Process]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>8}  {:>8}  {:>6}  {:>8}  {:>10}  COMMAND",
        "PID", "PPID", "UID", "TIME(s)", "RSS"
    )?;
    for p in procs {
        writeln!(
            out,
            "{:>8}  {:>8}  {:>6}  {:>8.2}  {:>10}  {}",
            p.pid,
            p.ppid,
            p.uid,
            p.cpu_seconds,
            human(p.rss),
            p.command
        )?;
    }
    Ok(())
}
