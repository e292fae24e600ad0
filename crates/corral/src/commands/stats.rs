//! `stats` and `top`: a container's cgroup counters and processes.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use corral_container::{container_stats, Status};
use corral_engine::Engine;
use serde_json::json;

pub fn stats(engine: &Engine, names: &[String], once: bool, as_json: bool) -> Result<()> {
    let cs = engine.containers()?;
    let ids: Vec<String> = if names.is_empty() {
        cs.ids()?
            .into_iter()
            .filter(|id| cs.load(id).is_ok_and(|s| s.status == Status::Running))
            .collect()
    } else {
        names
            .iter()
            .map(|n| cs.resolve(n))
            .collect::<Result<_, _>>()?
    };
    loop {
        let mut rows = Vec::new();
        for id in &ids {
            let Ok(s) = cs.load(id) else { continue };
            if let Some(st) =
                container_stats::stats(&cs, id, Path::new(corral_engine::CGROUP_ROOT))?
            {
                rows.push((s, st));
            }
        }
        if as_json {
            let v: Vec<_> = rows
                .iter()
                .map(|(s, st)| json!({ "id": s.id, "name": s.name, "memory_usage": st.memory_usage,
                    "memory_limit": st.memory_limit, "cpu_usage_ns": st.cpu_usage_ns, "pids": st.pids }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if !once {
            // Clear the screen and go home, as docker's refreshing display does.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            out,
            "{:12}  {:20}  {:>12}  {:>12}  {:>10}  {:>5}",
            "CONTAINER ID", "NAME", "MEM USAGE", "LIMIT", "CPU (s)", "PIDS"
        )?;
        for (s, st) in &rows {
            let limit = st.memory_limit.map_or("-".to_owned(), crate::output::human);
            writeln!(
                out,
                "{:12}  {:20}  {:>12}  {:>12}  {:>10.2}  {:>5}",
                &s.id[..12],
                s.name,
                crate::output::human(st.memory_usage),
                limit,
                st.cpu_usage_ns as f64 / 1e9,
                st.pids
            )?;
        }
        out.flush()?;
        if once || rows.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn top(engine: &Engine, c: &str, as_json: bool, ps_options: &[String]) -> Result<()> {
    let cs = engine.containers()?;
    let id = cs.resolve(c)?;
    let procs = container_stats::top(&cs, &id, Path::new(corral_engine::CGROUP_ROOT))?;
    if !ps_options.is_empty() {
        return host_ps(ps_options, &procs.iter().map(|p| p.pid).collect::<Vec<_>>());
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(());
    }
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
            crate::output::human(p.rss),
            p.command
        )?;
    }
    Ok(())
}

/// docker's `top C OPTIONS`: the host's `ps OPTIONS`, its header and the rows of `pids` (found
/// by its PID column, which the options must print).
fn host_ps(options: &[String], pids: &[i32]) -> Result<()> {
    let out = std::process::Command::new("ps")
        .args(options)
        .output()
        .map_err(|e| anyhow::anyhow!("running ps: {e} (top with options needs the host's ps)"))?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        anyhow::bail!("ps {}: its output has no PID column, which top needs to pick the container's processes", options.join(" "));
    };
    let mut w = std::io::stdout().lock();
    writeln!(w, "{header}")?;
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(w, "{l}")?;
        }
    }
    Ok(())
}
