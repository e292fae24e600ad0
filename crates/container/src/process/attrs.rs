//! Attributes of the container's process that an OCI bundle may set beyond credentials and
//! limits: scheduling policy, I/O priority, execution domain (personality), the LSM label it
//! execs into (AppArmor or SELinux), and the time namespace's clock offsets. Applied by the
//! init; parsed and checked by [`crate::oci`], so that what this host cannot do is refused at
//! `create`, not ignored.

use serde::{Deserialize, Serialize};

/// What the init applies, each only when asked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ProcessAttrs {
    /// `sched_setattr(2)`'s policy, nice, priority, flags, runtime, deadline, period.
    pub scheduler: Option<Scheduler>,
    /// `ioprio_set(2)`'s value: class << 13 | level.
    pub io_priority: Option<u32>,
    /// `personality(2)`'s persona.
    pub personality: Option<u64>,
    /// An AppArmor profile to exec into.
    pub apparmor_profile: Option<String>,
    /// An SELinux label to exec into.
    pub selinux_label: Option<String>,
    /// The NIS domain name of the container's UTS namespace.
    pub domainname: Option<String>,
    /// A new time namespace with these offsets of CLOCK_MONOTONIC and CLOCK_BOOTTIME
    /// (seconds, nanoseconds each).
    pub time_offsets: Option<[(i64, u32); 2]>,
    /// `set_mempolicy(2)`'s mode (with its flags) and node mask (64 nodes a word).
    pub memory_policy: Option<(u32, Vec<u64>)>,
}

/// The highest NUMA node a policy may name (the kernel's own limit is 1024 nodes).
pub const MAX_NUMA_NODE: u32 = 1023;

/// A memory policy mode by the spec's name (`MPOL_BIND` ...).
pub fn mempolicy_mode(name: &str) -> Option<u32> {
    Some(match name {
        "MPOL_DEFAULT" => 0,
        "MPOL_PREFERRED" => 1,
        "MPOL_BIND" => 2,
        "MPOL_INTERLEAVE" => 3,
        "MPOL_LOCAL" => 4,
        "MPOL_PREFERRED_MANY" => 5,
        "MPOL_WEIGHTED_INTERLEAVE" => 6,
        _ => return None,
    })
}

/// A memory policy mode flag by the spec's name.
pub fn mempolicy_flag(name: &str) -> Option<u32> {
    Some(match name {
        "MPOL_F_NUMA_BALANCING" => 1 << 13,
        "MPOL_F_RELATIVE_NODES" => 1 << 14,
        "MPOL_F_STATIC_NODES" => 1 << 15,
        _ => return None,
    })
}

/// A node list (`0-3,5`) as a mask of 64-bit words.
pub fn node_mask(list: &str) -> Result<Vec<u64>, String> {
    let mut mask = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let num = |s: &str| -> Result<u32, String> {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= MAX_NUMA_NODE)
                .ok_or_else(|| format!("node {s:?} is not a node number (0 to {MAX_NUMA_NODE})"))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("node range {part:?} runs backwards"));
        }
        for n in lo..=hi {
            let w = (n / 64) as usize;
            if mask.len() <= w {
                mask.resize(w + 1, 0);
            }
            mask[w] |= 1 << (n % 64);
        }
    }
    Ok(mask)
}

/// A scheduling policy and its parameters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Scheduler {
    /// `SCHED_OTHER` 0, `FIFO` 1, `RR` 2, `BATCH` 3, `IDLE` 5, `DEADLINE` 6.
    pub policy: u32,
    /// Nice value, -20 to 19.
    pub nice: i32,
    /// Static priority (FIFO and RR: 1 to 99).
    pub priority: u32,
    /// `SCHED_FLAG_*` bits.
    pub flags: u64,
    /// DEADLINE: runtime, deadline and period in nanoseconds.
    pub runtime: u64,
    /// See `runtime`.
    pub deadline: u64,
    /// See `runtime`.
    pub period: u64,
}

/// The scheduling policy named by the spec (`SCHED_FIFO` ...).
pub fn sched_policy(name: &str) -> Option<u32> {
    Some(match name {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        _ => return None,
    })
}

/// A `SCHED_FLAG_*` bit by the spec's name.
pub fn sched_flag(name: &str) -> Option<u64> {
    Some(match name {
        "SCHED_FLAG_RESET_ON_FORK" => 0x01,
        "SCHED_FLAG_RECLAIM" => 0x02,
        "SCHED_FLAG_DL_OVERRUN" => 0x04,
        "SCHED_FLAG_KEEP_POLICY" => 0x08,
        "SCHED_FLAG_KEEP_PARAMS" => 0x10,
        "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
        "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
        _ => return None,
    })
}

/// The I/O priority class by the spec's name (`IOPRIO_CLASS_RT` ...).
pub fn ioprio_class(name: &str) -> Option<u32> {
    Some(match name {
        "IOPRIO_CLASS_RT" => 1,
        "IOPRIO_CLASS_BE" => 2,
        "IOPRIO_CLASS_IDLE" => 3,
        _ => return None,
    })
}

/// Whether this host runs AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// Whether this host runs SELinux.
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Sets the scheduling policy and I/O priority: while the init still has its capabilities
/// (a real-time policy needs CAP_SYS_NICE, the real-time I/O class CAP_SYS_ADMIN).
pub fn apply_privileged(a: &ProcessAttrs) -> Result<(), String> {
    if let Some(s) = a.scheduler {
        // struct sched_attr (the first 48 bytes, SCHED_ATTR_SIZE_VER0).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: s.policy,
            flags: s.flags,
            nice: s.nice,
            priority: s.priority,
            runtime: s.runtime,
            deadline: s.deadline,
            period: s.period,
        };
        // SAFETY: the kernel reads `attr.size` bytes from a live, initialised struct.
        #[allow(unsafe_code)]
        let r =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
        if r != 0 {
            return Err(last_error("setting the scheduler (process.scheduler)"));
        }
    }
    if let Some((mode, mask)) = &a.memory_policy {
        let (ptr, maxnode) = if mask.is_empty() {
            (std::ptr::null(), 0)
        } else {
            (mask.as_ptr(), mask.len() as u64 * 64 + 1)
        };
        // SAFETY: the kernel reads `maxnode - 1` bits from `mask`, which holds that many.
        #[allow(unsafe_code)]
        let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, *mode, ptr, maxnode) };
        if r != 0 {
            return Err(last_error("setting the memory policy (linux.memoryPolicy)"));
        }
    }
    if let Some(prio) = a.io_priority {
        // SAFETY: integer arguments only. IOPRIO_WHO_PROCESS (1), this process (0).
        #[allow(unsafe_code)]
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
        if r != 0 {
            return Err(last_error("setting the I/O priority (process.ioPriority)"));
        }
    }
    Ok(())
}

/// Sets what takes effect at the exec: the personality and the LSM label to exec into.
pub fn apply_at_exec(a: &ProcessAttrs) -> Result<(), String> {
    if let Some(p) = a.personality {
        // SAFETY: an integer argument only.
        #[allow(unsafe_code)]
        let r = unsafe { libc::personality(p as libc::c_ulong) };
        if r < 0 {
            return Err(last_error("setting the personality (linux.personality)"));
        }
    }
    if let Some(profile) = &a.apparmor_profile {
        let done = std::fs::write(
            "/proc/thread-self/attr/apparmor/exec",
            format!("exec {profile}"),
        )
        .or_else(|_| std::fs::write("/proc/thread-self/attr/exec", format!("exec {profile}")));
        done.map_err(|e| format!("AppArmor profile {profile:?}: {e}"))?;
    }
    if let Some(label) = &a.selinux_label {
        std::fs::write("/proc/thread-self/attr/exec", label)
            .map_err(|e| format!("SELinux label {label:?}: {e}"))?;
    }
    Ok(())
}

/// Writes the offsets of the time namespace the init made (before anything enters it).
pub fn write_time_offsets(offsets: &[(i64, u32); 2]) -> Result<(), String> {
    let [(ms, mn), (bs, bn)] = *offsets;
    std::fs::write(
        "/proc/self/timens_offsets",
        format!("monotonic {ms} {mn}\nboottime {bs} {bn}\n"),
    )
    .map_err(|e| format!("setting the time namespace's offsets: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_map_to_kernel_numbers() {
        assert_eq!(sched_policy("SCHED_BATCH"), Some(3));
        assert_eq!(sched_policy("SCHED_ISO"), None);
        assert_eq!(sched_flag("SCHED_FLAG_RESET_ON_FORK"), Some(1));
        assert_eq!(ioprio_class("IOPRIO_CLASS_IDLE"), Some(3));
        assert_eq!(ioprio_class("IOPRIO_CLASS_NONE"), None);
        assert_eq!(node_mask("0-1,64").unwrap(), vec![0b11, 1]);
        assert!(node_mask("0-9876543210").is_err());
        assert!(node_mask("3-1").is_err());
        assert_eq!(mempolicy_mode("MPOL_BIND"), Some(2));
        assert_eq!(mempolicy_flag("badflag"), None);
    }
}
