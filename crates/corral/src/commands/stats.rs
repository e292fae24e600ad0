//! `stats` and `top`: a container's cgroup counters and processes.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use corral_container::{container_stats, Status};
use corral_engine::stats::{Sample, Usage};
use corral_engine::Engine;
use serde_json::json;

/// `stats`'s options: docker's.
pub struct StatsOptions {
    /// Containers as named (empty: every running one, or every one with `all`).
    pub names: Vec<String>,
    /// Stopped ones too (their rows are zeros, as docker's).
    pub all: bool,
    /// One reading, then exit.
    pub no_stream: bool,
    /// Full ids.
    pub no_trunc: bool,
    /// A Go template (`table ...`, `json`).
    pub format: Option<String>,
    /// corral's JSON: numbers, once.
    pub json: bool,
}

/// How long a one-shot reading (`--no-stream`, `--json`) measures CPU over.
const ONE_SHOT: Duration = Duration::from_millis(500);
/// How often the live display refreshes.
const REFRESH: Duration = Duration::from_secs(1);

pub fn stats(engine: &Engine, o: &StatsOptions) -> Result<()> {
    let cs = engine.containers()?;
    let template = match &o.format {
        Some(f) if f != "json" => {
            let f = f.replace("\\t", "\t").replace("\\n", "\n");
            Some((
                corral_engine::template::table_header(&f),
                corral_engine::template::Template::parse(corral_engine::template::table_body(&f))?,
            ))
        }
        _ => None,
    };
    let pick = || -> Result<Vec<(String, String)>> {
        Ok(if o.names.is_empty() {
            cs.ids()?
                .into_iter()
                .filter_map(|id| cs.load(&id).ok())
                .filter(|s| o.all || s.status == Status::Running)
                .map(|s| (s.id.clone(), s.name))
                .collect()
        } else {
            let mut v = Vec::new();
            for n in &o.names {
                let id = cs.resolve(n)?;
                v.push((id.clone(), cs.load(&id)?.name));
            }
            v
        })
    };
    let once = o.no_stream || o.json;
    let mut wanted = pick()?;
    let mut before: Vec<Sample> = engine.sample(&ids_of(&wanted))?;
    if once {
        std::thread::sleep(ONE_SHOT);
    }
    loop {
        let now = engine.sample(&ids_of(&wanted))?;
        let rows: Vec<Usage> = wanted
            .iter()
            .map(|(id, name)| match now.iter().find(|s| &s.id == id) {
                Some(n) => Usage::between(before.iter().find(|b| &b.id == id), n),
                // Not running: docker's row of zeros.
                None => Usage {
                    id: id.clone(),
                    name: name.clone(),
                    cpu_percent: 0.0,
                    memory_usage: 0,
                    memory_limit: 0,
                    memory_percent: 0.0,
                    net_rx: 0,
                    net_tx: 0,
                    block_read: 0,
                    block_write: 0,
                    pids: 0,
                },
            })
            .collect();
        if o.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if !once {
            // Clear the screen and go home, as docker's refreshing display does.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        let id_of = |id: &str| {
            if o.no_trunc {
                id.to_owned()
            } else {
                id[..12.min(id.len())].to_owned()
            }
        };
        if o.format.is_none() {
            writeln!(
                out,
                "{:12}  {:20}  {:>7}  {:>21}  {:>7}  {:>19}  {:>19}  {:>5}",
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS"
            )?;
        } else if let Some((Some(h), _)) = &template {
            writeln!(out, "{h}")?;
        }
        for u in &rows {
            let f = docker_fields(u, &id_of(&u.id));
            match (&template, o.format.as_deref()) {
                (Some((_, tpl)), _) => writeln!(out, "{}", tpl.render(&f)?)?,
                (None, Some(_)) => writeln!(out, "{}", serde_json::to_string(&f)?)?,
                (None, None) => writeln!(
                    out,
                    "{:12}  {:20}  {:>7}  {:>21}  {:>7}  {:>19}  {:>19}  {:>5}",
                    f["ID"].as_str().unwrap_or_default(),
                    u.name,
                    f["CPUPerc"].as_str().unwrap_or_default(),
                    f["MemUsage"].as_str().unwrap_or_default(),
                    f["MemPerc"].as_str().unwrap_or_default(),
                    f["NetIO"].as_str().unwrap_or_default(),
                    f["BlockIO"].as_str().unwrap_or_default(),
                    u.pids
                )?,
            }
        }
        out.flush()?;
        drop(out);
        if once || (rows.is_empty() && !o.names.is_empty()) {
            return Ok(());
        }
        std::thread::sleep(REFRESH);
        before = now;
        if o.names.is_empty() {
            // New containers join the display, removed ones leave it (docker's).
            wanted = pick()?;
        }
    }
}

fn ids_of(v: &[(String, String)]) -> Vec<String> {
    v.iter().map(|(id, _)| id.clone()).collect()
}

/// A row as docker's `stats --format` sees it: every field a string.
fn docker_fields(u: &Usage, id: &str) -> serde_json::Value {
    json!({
        "Container": id,
        "ID": id,
        "Name": u.name,
        "CPUPerc": format!("{:.2}%", u.cpu_percent),
        "MemUsage": format!("{} / {}", binary_size(u.memory_usage), binary_size(u.memory_limit)),
        "MemPerc": format!("{:.2}%", u.memory_percent),
        "NetIO": format!("{} / {}", crate::output::human(u.net_rx), crate::output::human(u.net_tx)),
        "BlockIO": format!("{} / {}", crate::output::human(u.block_read), crate::output::human(u.block_write)),
        "PIDs": u.pids.to_string(),
    })
}

/// Bytes in binary units with four significant digits, as docker prints memory (`1.52MiB`).
fn binary_size(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let n = format!("{v:.digits$}");
    let n = if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        n
    };
    format!("{n}{}", UNITS[i])
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
    crate::output::print_processes(&procs)
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

#[cfg(test)]
mod tests {
    use super::binary_size;

    #[test]
    fn memory_sizes_print_as_docker_prints_them() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(1_594_884), "1.521MiB");
        assert_eq!(binary_size(16 << 30), "16GiB");
        assert_eq!(binary_size(500 << 20), "500MiB");
    }
}
