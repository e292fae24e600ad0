//! `run` and `create`'s flags read into the engine's [`ContainerSpec`]: parsing only, the
//! checks that need the host or the image are the engine's (`corral_engine::plan`).

use std::io::BufRead;
use std::path::Path;

use anyhow::{bail, Context, Result};
use corral_engine::spec::{self, ContainerSpec, Isolation, Mount};

use crate::cli::RunArgs;

/// `run`/`create`'s flags as the engine's spec.
pub(super) fn spec_of(a: &RunArgs) -> Result<ContainerSpec> {
    if let Some(p) = &a.platform {
        if p != "linux/amd64" && p != "linux/x86_64" && p != "amd64" {
            bail!("--platform {p}: only linux/amd64 runs on this host (no emulation of other architectures)");
        }
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let mut env = Vec::new();
    if a.env_host {
        env.extend(std::env::vars().map(|(k, v)| format!("{k}={v}")));
    }
    env.extend(read_env_files(&a.env_file)?);
    env.extend(a.env.iter().map(|e| expand_env(e)));
    let mut mounts = Vec::new();
    for v in &a.volume {
        mounts.push(Mount::parse_volume(v, &cwd)?);
    }
    for m in &a.mount {
        mounts.push(Mount::parse_mount_flag(m, &cwd)?);
    }
    for t in &a.tmpfs {
        mounts.push(Mount::parse_tmpfs(t)?);
    }
    let mut labels = std::collections::BTreeMap::new();
    for f in &a.label_file {
        let lines = read_lines(f)?;
        spec::parse_labels(&mut labels, lines.iter().map(String::as_str))?;
    }
    spec::parse_labels(&mut labels, a.label.iter().map(String::as_str))?;
    let mut security = spec::Security {
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        devices: a.device.clone(),
        device_cgroup_rules: a.device_cgroup_rule.clone(),
        userns: a.userns.clone(),
        uidmap: a.uidmap.clone(),
        gidmap: a.gidmap.clone(),
        host_namespaces: [
            ("ipc", &a.ipc),
            ("uts", &a.uts),
            ("pid", &a.pid),
            ("cgroup", &a.cgroupns),
        ]
        .into_iter()
        .filter(|(_, m)| m.as_deref() == Some("host"))
        .map(|(n, _)| n.to_owned())
        .collect(),
        ..Default::default()
    };
    for (flag, kind, mode, plain) in [
        (
            "--ipc",
            "ipc",
            &a.ipc,
            &["private", "shareable", "host"][..],
        ),
        ("--pid", "pid", &a.pid, &["private", "host"][..]),
    ] {
        match mode.as_deref() {
            None => {}
            Some(m) if plain.contains(&m) => {}
            Some(m) => match m.strip_prefix("container:") {
                Some(c) => security.shared_namespaces.push((kind.into(), c.into())),
                None => bail!(
                    "{flag} {m:?}: expected {} or container:NAME",
                    plain.join(", ")
                ),
            },
        }
    }
    let mut networks = Vec::new();
    for n in a.network.iter().flat_map(|n| n.split(',')) {
        match n.strip_prefix("container:") {
            Some(c) => security.shared_namespaces.push(("net".into(), c.into())),
            None => networks.push(n.to_owned()),
        }
    }
    for o in &a.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                security.no_new_privileges = true
            }
            s if s.starts_with("seccomp=") || s.starts_with("seccomp:") => {
                security.seccomp = match &s["seccomp=".len()..] {
                    "unconfined" => spec::Seccomp::Unconfined,
                    "" => bail!("--security-opt {o:?}: give seccomp=unconfined or seccomp=FILE"),
                    file => spec::Seccomp::Profile(file.into()),
                };
            }
            s if s.starts_with("mask=") => security.mask.push(s["mask=".len()..].to_owned()),
            s if s.starts_with("unmask=") => {
                security.unmask.push(s["unmask=".len()..].to_owned())
            }
            _ => bail!(
                "--security-opt {o:?}: supported: no-new-privileges, seccomp=unconfined, seccomp=FILE, mask=PATHS, unmask=ALL|PATHS"
            ),
        }
    }
    let memory = match &a.memory {
        Some(m) => Some(
            corral_container::config::parse_size(m)
                .with_context(|| format!("-m {m:?}: expected a size such as 64m or 1g"))?,
        ),
        None => None,
    };
    if memory.is_some_and(|b| b < 256 << 10) {
        bail!(
            "-m {}: the smallest memory limit is 256k",
            a.memory.as_deref().unwrap_or("")
        );
    }
    Ok(ContainerSpec {
        name: a.name.clone(),
        image: a.image.clone(),
        pull: a.pull.parse()?,
        entrypoint: a.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        command: a.command.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        group_add: a.group_add.clone(),
        hostname: a.hostname.clone(),
        interactive: a.interactive,
        tty: a.tty,
        mounts,
        read_only: a.read_only,
        resources: spec::Resources {
            memory,
            cpus: a.cpus,
            cpu_shares: a.cpu_shares,
            cpuset_cpus: a.cpuset_cpus.clone(),
            cpuset_mems: a.cpuset_mems.clone(),
            pids_limit: a.pids_limit,
            cpu_period: a.cpu_period,
            cpu_quota: a.cpu_quota,
            oom_score_adj: a.oom_score_adj,
            shm_size: match &a.shm_size {
                Some(v) => {
                    Some(corral_container::config::parse_size(v).with_context(|| {
                        format!("--shm-size {v:?}: expected a size such as 64m")
                    })?)
                }
                None => None,
            },
            memory_swap: match a.memory_swap.as_deref() {
                None => None,
                Some("-1") => Some(-1),
                Some(v) => Some(corral_container::config::parse_size(v).with_context(|| {
                    format!("--memory-swap {v:?}: expected a size such as 1g, or -1")
                })? as i64),
            },
            memory_reservation: a
                .memory_reservation
                .as_deref()
                .map(|v| {
                    corral_container::config::parse_size(v).with_context(|| {
                        format!("--memory-reservation {v:?}: expected a size such as 32m")
                    })
                })
                .transpose()?,
            memory_swappiness: a.memory_swappiness,
            oom_kill_disable: a.oom_kill_disable,
            blkio_weight: a.blkio_weight,
            device_throttles: spec::DeviceThrottles {
                read_bps: device_rates(&a.device_read_bps, "--device-read-bps", true)?,
                write_bps: device_rates(&a.device_write_bps, "--device-write-bps", true)?,
                read_iops: device_rates(&a.device_read_iops, "--device-read-iops", false)?,
                write_iops: device_rates(&a.device_write_iops, "--device-write-iops", false)?,
            },
        },
        security,
        ulimits: a.ulimit.clone(),
        networking: spec::Networking {
            networks,
            aliases: a.network_alias.clone(),
            publish: a.publish.clone(),
            publish_all: a.publish_all,
            expose: a.expose.clone(),
            ip: a.ip,
            mac: a.mac_address.clone(),
            port_group: None,
        },
        labels,
        restart: a.restart.clone(),
        auto_remove: a.rm,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        detach_keys: match &a.detach_keys {
            None => None,
            Some(k) => Some(
                corral_container::tty::parse_detach_keys(k)
                    .map_err(|e| anyhow::anyhow!("--detach-keys {k:?}: {e}"))?,
            ),
        },
        init: a.init,
        log_driver: a.log_driver.clone(),
        log_opts: a.log_opt.clone(),
        healthcheck: corral_engine::health::HealthSpec {
            cmd: a.health_cmd.clone(),
            interval: a.health_interval.map(Into::into),
            timeout: a.health_timeout.map(Into::into),
            retries: a.health_retries,
            start_period: a.health_start_period.map(Into::into),
            disable: a.no_healthcheck,
        },
        sysctls: a
            .sysctl
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .with_context(|| format!("--sysctl {kv:?}: the form is KEY=VALUE"))
            })
            .collect::<Result<_>>()?,
        extra_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        pod: a.pod.clone(),
        no_image_volumes: false,
        dns_hold: false,
        isolation: if a.isolation == "vm" {
            Isolation::Vm
        } else {
            Isolation::Container
        },
    })
}

fn read_lines(f: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", f.display()))?;
    Ok(lines
        .into_iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect())
}

pub(super) fn read_env_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(read_lines(f)?.iter().map(|l| expand_env(l)));
    }
    Ok(out)
}

/// `K` alone takes the value from corral's own environment, as docker does.
pub(super) fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_owned()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

/// `PATH:RATE` of the device throttle flags: a size (`1mb`) for bytes, a number for
/// operations.
fn device_rates(
    given: &[String],
    flag: &str,
    bytes: bool,
) -> Result<Vec<(std::path::PathBuf, u64)>> {
    given
        .iter()
        .map(|g| {
            let (path, rate) = g
                .rsplit_once(':')
                .with_context(|| format!("{flag} {g:?}: expected PATH:RATE, as /dev/sda:1mb"))?;
            let rate = if bytes {
                corral_container::config::parse_size(rate)
            } else {
                rate.parse().ok()
            }
            .with_context(|| format!("{flag} {g:?}: {rate:?} is not a rate"))?;
            Ok((std::path::PathBuf::from(path), rate))
        })
        .collect()
}
