//! The capability set of a container from docker's flags: `--cap-add`, `--cap-drop` and
//! `--privileged`, applied to the default set ([`crate::config::DEFAULT_CAPS`]) as docker's
//! `TweakCapabilities` does:
//!
//! - `--privileged`: every capability;
//! - `--cap-add ALL`: every capability but those dropped;
//! - `--cap-drop ALL`: only those added;
//! - otherwise the defaults, less those dropped, plus those added.
//!
//! Names are taken with or without the `CAP_` prefix, in any case. "Every capability" is every
//! capability this process holds (bounding and permitted sets), not every one the kernel
//! knows: the init cannot give what it lacks (root on some hosts has no `CAP_SYS_RESOURCE`).
//!
//! Also the five sets of an OCI process (`process.capabilities`), as runc takes them
//! ([`ProcessCaps`], [`check_sets`]): names the kernel does not know are ignored with a
//! warning; an inheritable capability outside the bounding set, or an effective one outside
//! the permitted set, is refused, since capset(2) would refuse it (security/commoncap.c,
//! `cap_capset`) — runc fails there with a bare "operation not permitted"; corral names the
//! capability before anything is made. An ambient capability that is not both permitted and
//! inheritable cannot be raised (`PR_CAP_AMBIENT_RAISE`): warned about and left out, as runc
//! does. A permitted or effective capability outside the bounding set is allowed, as the
//! kernel and runc allow it (it is lost at the exec).

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::{CapSets, ContainerConfig};

/// A capability flag names no capability.
#[derive(Debug, thiserror::Error)]
#[error("unknown capability {0:?}: give a name such as NET_ADMIN or CAP_SYS_ADMIN, or ALL")]
pub struct UnknownCapability(pub String);

/// A capability name as the init takes it (`CAP_SYS_ADMIN`), or `None` for `ALL`.
pub fn normalize(name: &str) -> Result<Option<String>, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(None);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    match Capability::from_str(&full) {
        Ok(c) => Ok(Some(c.to_string())),
        Err(_) => Err(UnknownCapability(name.to_owned())),
    }
}

/// Every capability this process holds and so can hand to a container, sorted by number.
pub fn available() -> Vec<String> {
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_default();
    let permitted = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let mut held: Vec<Capability> = bounding.intersection(&permitted).copied().collect();
    held.sort_by_key(|c| c.index());
    held.iter().map(|c| c.to_string()).collect()
}

/// The container's capabilities from `defaults` and the flags; `all` is what "every
/// capability" means ([`available`] in practice).
pub fn resolve(
    defaults: &[String],
    add: &[String],
    drop: &[String],
    privileged: bool,
    all: &[String],
) -> Result<Vec<String>, UnknownCapability> {
    if privileged {
        return Ok(all.to_vec());
    }
    let parse = |names: &[String]| -> Result<(Vec<String>, bool), UnknownCapability> {
        let mut out = Vec::new();
        let mut every = false;
        for n in names {
            match normalize(n)? {
                Some(c) => out.push(c),
                None => every = true,
            }
        }
        Ok((out, every))
    };
    let (add, add_all) = parse(add)?;
    let (drop, drop_all) = parse(drop)?;
    let mut out: Vec<String> = if add_all {
        all.iter().filter(|c| !drop.contains(c)).cloned().collect()
    } else if drop_all {
        add
    } else {
        let mut kept: Vec<String> = defaults
            .iter()
            .filter(|c| !drop.contains(c))
            .cloned()
            .collect();
        kept.extend(add);
        kept
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    Ok(out)
}

/// The capabilities this kernel has (`/proc/sys/kernel/cap_last_cap`, else probing the
/// bounding set), as runc's list of available capabilities.
pub fn supported() -> CapsHashSet {
    caps::runtime::procfs_all_supported(None)
        .unwrap_or_else(|_| caps::runtime::thread_all_supported())
}

/// `names` less those that are not capabilities of `supported` (unknown names, or capabilities
/// newer than the kernel), which are returned apart, as runc ignores them with a warning.
pub fn known(names: &[String], supported: &CapsHashSet) -> (Vec<String>, Vec<String>) {
    let mut ok = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for n in names {
        match Capability::from_str(n) {
            Ok(c) if supported.contains(&c) => ok.push(n.clone()),
            _ => unknown.push(n.clone()),
        }
    }
    (ok, unknown)
}

/// A combination of capability sets the kernel refuses.
#[derive(Debug, thiserror::Error)]
pub enum CapSetError {
    /// capset(2) takes no inheritable capability outside the bounding set.
    #[error("{0} is in the inheritable set but not in the bounding set: capset would fail with EPERM (operation not permitted): add it to bounding or remove it from inheritable")]
    InheritableOutsideBounding(String),
    /// capset(2) takes no effective capability outside the permitted set.
    #[error("{0} is in the effective set but not in the permitted set: capset would fail with EPERM (operation not permitted): add it to permitted or remove it from effective")]
    EffectiveOutsidePermitted(String),
}

/// Checks the sets of an OCI process (`bounding` and `sets`) against the kernel's rules (see
/// the module doc). Ambient capabilities that cannot be raised are removed from `sets`; the
/// returned warnings name them.
pub fn check_sets(bounding: &[String], sets: &mut CapSets) -> Result<Vec<String>, CapSetError> {
    let has = |list: &[String], c: &String| list.iter().any(|x| x == c);
    if let Some(c) = sets.inheritable.iter().find(|c| !has(bounding, c)) {
        return Err(CapSetError::InheritableOutsideBounding(c.clone()));
    }
    if let Some(c) = sets.effective.iter().find(|c| !has(&sets.permitted, c)) {
        return Err(CapSetError::EffectiveOutsidePermitted(c.clone()));
    }
    let mut warnings = Vec::new();
    let (permitted, inheritable) = (sets.permitted.clone(), sets.inheritable.clone());
    sets.ambient.retain(|c| {
        let ok = has(&permitted, c) && has(&inheritable, c);
        if !ok {
            warnings.push(format!(
                "can't raise ambient capability {c}: it must be both permitted and inheritable"
            ));
        }
        ok
    });
    Ok(warnings)
}

/// Adds `cap` to the process of `cfg` as `runc exec --cap` does: to the bounding, effective
/// and permitted sets, and to the ambient set when it is inheritable. (runc adds it to the
/// ambient set whenever the inheritable set is not empty, and warns when it cannot be raised,
/// that is when it is not inheritable: the same sets, without the warning.)
pub fn add_for_exec(cfg: &mut ContainerConfig, cap: &str) {
    let push = |v: &mut Vec<String>| {
        if !v.iter().any(|c| c == cap) {
            v.push(cap.to_owned());
        }
    };
    push(&mut cfg.capabilities);
    if let Some(sets) = cfg.cap_sets.as_mut() {
        push(&mut sets.effective);
        push(&mut sets.permitted);
        if sets.inheritable.iter().any(|c| c == cap) {
            push(&mut sets.ambient);
        }
    }
}

/// The five capability sets of a container's process, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCaps {
    /// Bounding set.
    pub bounding: CapsHashSet,
    /// Effective set.
    pub effective: CapsHashSet,
    /// Permitted set.
    pub permitted: CapsHashSet,
    /// Inheritable set.
    pub inheritable: CapsHashSet,
    /// Ambient set.
    pub ambient: CapsHashSet,
}

impl ProcessCaps {
    /// The sets `cfg` asks for; without [`ContainerConfig::cap_sets`] (docker's flags),
    /// effective and permitted are the bounding set, inheritable and ambient empty. Names that
    /// do not parse are skipped (a bundle's were warned about when it was read).
    pub fn of(cfg: &ContainerConfig) -> Self {
        let parse = |v: &[String]| -> CapsHashSet {
            v.iter()
                .filter_map(|c| Capability::from_str(c).ok())
                .collect()
        };
        let bounding = parse(&cfg.capabilities);
        match &cfg.cap_sets {
            None => ProcessCaps {
                effective: bounding.clone(),
                permitted: bounding.clone(),
                bounding,
                ..ProcessCaps::default()
            },
            Some(s) => ProcessCaps {
                bounding,
                effective: parse(&s.effective),
                permitted: parse(&s.permitted),
                inheritable: parse(&s.inheritable),
                ambient: parse(&s.ambient),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("chown").unwrap().as_deref(), Some("CAP_CHOWN"));
        assert_eq!(
            normalize("Cap_Sys_Admin").unwrap().as_deref(),
            Some("CAP_SYS_ADMIN")
        );
        assert_eq!(normalize("all").unwrap(), None);
        assert!(normalize("FLY").is_err());
    }

    #[test]
    fn flags_tweak_the_defaults_as_docker() {
        let defaults = v(&["CAP_CHOWN", "CAP_KILL"]);
        let all = v(&["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
        let r = |a: &[&str], d: &[&str], p: bool| resolve(&defaults, &v(a), &v(d), p, &all);
        assert_eq!(r(&[], &[], false).unwrap(), defaults);
        assert_eq!(
            r(&["sys_admin"], &["CHOWN"], false).unwrap(),
            v(&["CAP_KILL", "CAP_SYS_ADMIN"])
        );
        assert_eq!(
            r(&["ALL"], &["kill"], false).unwrap(),
            v(&["CAP_CHOWN", "CAP_SYS_ADMIN"])
        );
        assert_eq!(r(&["KILL"], &["ALL"], false).unwrap(), v(&["CAP_KILL"]));
        assert_eq!(r(&["KILL"], &["ALL"], true).unwrap(), all);
        assert_eq!(r(&["chown"], &[], false).unwrap(), defaults);
        assert!(r(&["bogus"], &[], false).is_err());
    }

    #[test]
    fn unknown_names_are_set_apart() {
        let supported: CapsHashSet = [Capability::CAP_CHOWN, Capability::CAP_KILL].into();
        let (ok, unknown) = known(
            &v(&[
                "CAP_CHOWN",
                "CAP_BOGUS",
                "CAP_KILL",
                "CAP_SYS_ADMIN",
                "chown",
            ]),
            &supported,
        );
        assert_eq!(ok, v(&["CAP_CHOWN", "CAP_KILL"]));
        // Not supported by this "kernel", unknown, and not in the OCI spelling.
        assert_eq!(unknown, v(&["CAP_BOGUS", "CAP_SYS_ADMIN", "chown"]));
    }

    #[test]
    fn sets_the_kernel_refuses_are_named() {
        let bounding = v(&["CAP_KILL", "CAP_CHOWN"]);
        let mut sets = CapSets {
            inheritable: v(&["CAP_CHOWN", "CAP_NET_RAW"]),
            ..CapSets::default()
        };
        let err = check_sets(&bounding, &mut sets).unwrap_err();
        assert!(
            matches!(&err, CapSetError::InheritableOutsideBounding(c) if c == "CAP_NET_RAW"),
            "{err}"
        );
        let mut sets = CapSets {
            effective: v(&["CAP_KILL", "CAP_SYS_ADMIN"]),
            permitted: v(&["CAP_KILL"]),
            ..CapSets::default()
        };
        let err = check_sets(&bounding, &mut sets).unwrap_err();
        assert!(
            matches!(&err, CapSetError::EffectiveOutsidePermitted(c) if c == "CAP_SYS_ADMIN"),
            "{err}"
        );
        // Permitted (and so effective) outside the bounding set: allowed, as by the kernel.
        let mut sets = CapSets {
            effective: v(&["CAP_SYS_ADMIN"]),
            permitted: v(&["CAP_SYS_ADMIN", "CAP_KILL"]),
            ..CapSets::default()
        };
        assert!(check_sets(&bounding, &mut sets).unwrap().is_empty());
    }

    #[test]
    fn ambient_needs_permitted_and_inheritable() {
        let bounding = v(&["CAP_KILL", "CAP_CHOWN", "CAP_SYSLOG"]);
        let mut sets = CapSets {
            effective: v(&["CAP_KILL"]),
            permitted: v(&["CAP_KILL", "CAP_CHOWN"]),
            inheritable: v(&["CAP_CHOWN", "CAP_SYSLOG"]),
            ambient: v(&["CAP_CHOWN", "CAP_KILL", "CAP_SYSLOG"]),
        };
        let warnings = check_sets(&bounding, &mut sets).unwrap();
        assert_eq!(sets.ambient, v(&["CAP_CHOWN"]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("CAP_KILL") && warnings[1].contains("CAP_SYSLOG"));
    }

    #[test]
    fn exec_cap_adds_like_runc() {
        let mut cfg = ContainerConfig::defaults(Vec::new(), Vec::new());
        cfg.capabilities = v(&["CAP_KILL"]);
        cfg.cap_sets = Some(CapSets::default());
        add_for_exec(&mut cfg, "CAP_CHOWN");
        let sets = cfg.cap_sets.clone().unwrap();
        assert_eq!(cfg.capabilities, v(&["CAP_KILL", "CAP_CHOWN"]));
        assert_eq!(sets.effective, v(&["CAP_CHOWN"]));
        assert_eq!(sets.permitted, v(&["CAP_CHOWN"]));
        assert!(sets.ambient.is_empty(), "not inheritable, not ambient");
        cfg.cap_sets.as_mut().unwrap().inheritable = v(&["CAP_SYSLOG"]);
        add_for_exec(&mut cfg, "CAP_SYSLOG");
        add_for_exec(&mut cfg, "CAP_NET_RAW");
        assert_eq!(cfg.cap_sets.unwrap().ambient, v(&["CAP_SYSLOG"]));
    }

    #[test]
    fn without_sets_effective_and_permitted_are_the_bounding_set() {
        let mut cfg = ContainerConfig::defaults(Vec::new(), Vec::new());
        cfg.capabilities = v(&["CAP_KILL", "CAP_BOGUS"]);
        let p = ProcessCaps::of(&cfg);
        let kill: CapsHashSet = [Capability::CAP_KILL].into();
        assert_eq!(p.bounding, kill);
        assert_eq!(p.effective, kill);
        assert_eq!(p.permitted, kill);
        assert!(p.inheritable.is_empty() && p.ambient.is_empty());
    }
}
