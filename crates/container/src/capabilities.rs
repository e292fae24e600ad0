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

use std::str::FromStr;

use caps::{CapSet, Capability};

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
}
