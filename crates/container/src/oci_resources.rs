//! The `linux.resources` object of an OCI spec (a bundle's, or `update --resources`), read into
//! corral's [`Resources`]: memory, CPU, pids, devices, block I/O, huge pages and the network
//! class, checked as runc checks them. Split from [`crate::oci`], which reads the rest of the
//! bundle.

use serde::Deserialize;

use crate::config::{DeviceRule, Resources};
use crate::oci::OciError;

/// A rule of `linux.resources.devices`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OciDeviceRule {
    allow: bool,
    #[serde(rename = "type")]
    typ: Option<String>,
    major: Option<i64>,
    minor: Option<i64>,
    access: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LinuxResources {
    devices: Option<Vec<OciDeviceRule>>,
    memory: Option<Memory>,
    cpu: Option<Cpu>,
    pids: Option<Pids>,
    #[serde(rename = "blockIO")]
    block_io: Option<BlockIo>,
    #[serde(rename = "hugepageLimits")]
    hugepage_limits: Vec<HugepageLimit>,
    network: Option<Network>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Memory {
    limit: Option<i64>,
    reservation: Option<i64>,
    swap: Option<i64>,
    kernel: Option<i64>,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: Option<i64>,
    swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    disable_oom_killer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlockIo {
    weight: Option<u16>,
    #[serde(rename = "leafWeight")]
    leaf_weight: Option<u16>,
    #[serde(rename = "weightDevice")]
    weight_device: Vec<WeightDevice>,
    #[serde(rename = "throttleReadBpsDevice")]
    read_bps: Vec<RateDevice>,
    #[serde(rename = "throttleWriteBpsDevice")]
    write_bps: Vec<RateDevice>,
    #[serde(rename = "throttleReadIOPSDevice")]
    read_iops: Vec<RateDevice>,
    #[serde(rename = "throttleWriteIOPSDevice")]
    write_iops: Vec<RateDevice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WeightDevice {
    major: u32,
    minor: u32,
    weight: Option<u16>,
    #[serde(rename = "leafWeight")]
    leaf_weight: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RateDevice {
    major: u32,
    minor: u32,
    rate: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HugepageLimit {
    #[serde(rename = "pageSize")]
    page_size: String,
    limit: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Network {
    #[serde(rename = "classID")]
    class_id: Option<u32>,
    priorities: Vec<InterfacePriority>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InterfacePriority {
    name: String,
    priority: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cpu {
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
    cpus: Option<String>,
    mems: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pids {
    limit: Option<i64>,
}

/// A bundle's device rules, then docker's defaults allowed (runc's order: a bundle that
/// starts with a deny-all, as podman's and containerd's do, keeps /dev/null usable).
pub(crate) fn device_rules(rules: &[OciDeviceRule]) -> Result<Vec<DeviceRule>, String> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let num = |v: Option<i64>| -> Result<Option<u32>, String> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) if (0..1 << 20).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(format!(
                    "linux.resources.devices: device number {n} out of range"
                )),
            }
        };
        let kind = match r.typ.as_deref().unwrap_or("a") {
            "a" => 'a',
            "c" => 'c',
            "b" => 'b',
            t => return Err(format!("linux.resources.devices: unknown type {t:?}")),
        };
        let access = r
            .access
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "rwm".into());
        if !access.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "linux.resources.devices: access {access:?} is not made of r, w, m"
            ));
        }
        out.push(DeviceRule {
            allow: r.allow,
            kind,
            major: num(r.major)?,
            minor: num(r.minor)?,
            access,
        });
    }
    out.extend(crate::config::allowed_devices());
    Ok(out)
}

/// The resources a spec asks, and warnings about what this runtime ignores (kernel memory
/// limits, which Linux 6.1 no longer enforces).
pub(crate) fn resources_of(r: &LinuxResources) -> Result<(Resources, Vec<String>), String> {
    let mut res = Resources::default();
    let mut warnings = Vec::new();
    if let Some(d) = &r.devices {
        res.devices = Some(device_rules(d)?);
    }
    if let Some(m) = &r.memory {
        res.memory = m.limit.filter(|&l| l > 0).map(|l| l as u64);
        res.memory_reservation = m.reservation.filter(|&l| l > 0).map(|l| l as u64);
        res.memory_swap = m.swap.filter(|&s| s > 0 || s == -1);
        res.memory_swappiness = m.swappiness;
        res.oom_kill_disable = m.disable_oom_killer.unwrap_or(false);
        if m.kernel.is_some() || m.kernel_tcp.is_some() {
            warnings.push(
                "linux.resources.memory.kernel and kernelTCP are ignored: kernel memory is counted in the memory limit (Linux 4.6+ with cgroup v2; v1 kernel limits are deprecated)"
                    .to_owned(),
            );
        }
    }
    if let Some(b) = &r.block_io {
        let mut blkio = crate::config::Blkio {
            weight: b.weight,
            leaf_weight: b.leaf_weight,
            ..Default::default()
        };
        for d in &b.weight_device {
            if let Some(w) = d.weight {
                blkio.weight_device.push((d.major, d.minor, w));
            }
            if d.leaf_weight.is_some() {
                return Err("linux.resources.blockIO.weightDevice: leafWeight is not supported (CFQ's, gone since Linux 5.0)".into());
            }
        }
        let rates = |v: &[RateDevice]| v.iter().map(|d| (d.major, d.minor, d.rate)).collect();
        blkio.read_bps = rates(&b.read_bps);
        blkio.write_bps = rates(&b.write_bps);
        blkio.read_iops = rates(&b.read_iops);
        blkio.write_iops = rates(&b.write_iops);
        if blkio != crate::config::Blkio::default() {
            res.blkio = Some(blkio);
        }
    }
    res.hugetlb = r
        .hugepage_limits
        .iter()
        .map(|h| (h.page_size.clone(), h.limit))
        .collect();
    if let Some(n) = &r.network {
        res.net_cls_classid = n.class_id;
        res.net_prio = n
            .priorities
            .iter()
            .map(|p| (p.name.clone(), p.priority))
            .collect();
    }
    if let Some(c) = &r.cpu {
        res.cpu_shares = c.shares.filter(|&s| s > 0);
        res.cpu_quota = c.quota.filter(|&q| q > 0);
        res.cpu_period = c.period.filter(|&p| p > 0);
        res.cpuset_cpus = c.cpus.clone().filter(|s| !s.is_empty());
        res.cpuset_mems = c.mems.clone().filter(|s| !s.is_empty());
    }
    if let Some(p) = &r.pids {
        res.pids_limit = p.limit.filter(|&l| l > 0);
    }
    Ok((res, warnings))
}

/// Parses an OCI `LinuxResources` object (`update --resources`).
pub fn parse_resources(json: &[u8]) -> Result<Resources, OciError> {
    let r: LinuxResources =
        serde_json::from_slice(json).map_err(|e| OciError::Parse("resources".into(), e))?;
    resources_of(&r)
        .map(|(res, _)| res)
        .map_err(|what| OciError::Unsupported {
            path: "resources".into(),
            what,
        })
}
