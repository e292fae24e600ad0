//! docker's `--ulimit NAME=SOFT[:HARD]`, for every limit Linux has
//! ([`crate::config::RlimitName`]: `nofile`, `as`, `fsize`, `cpu` ...): the hard limit defaults
//! to the soft one, `-1` or `unlimited` means no limit. Values above the caller's hard limit
//! are lowered to it by the init (raising a hard limit needs `CAP_SYS_RESOURCE`), as corral's
//! documentation promises; a bundle's limits are not (see [`crate::oci`]).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit as RRlimit};

use crate::config::{Rlimit, RlimitName};

/// A `--ulimit` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum UlimitError {
    /// Not `NAME=SOFT[:HARD]`.
    #[error("--ulimit {0:?}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")]
    Syntax(String),
    /// A name Linux has no limit for.
    #[error("--ulimit {0:?}: unknown limit; the limits are cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, as, locks, sigpending, msgqueue, nice, rtprio, rttime")]
    Name(String),
    /// Soft above hard.
    #[error("--ulimit {0:?}: the soft limit is above the hard limit")]
    SoftAboveHard(String),
}

/// Parses one `--ulimit` value.
pub fn parse_ulimit(s: &str) -> Result<Rlimit, UlimitError> {
    let syntax = || UlimitError::Syntax(s.to_owned());
    let (name, values) = s.split_once('=').ok_or_else(syntax)?;
    let name = RlimitName::from_docker(name).ok_or_else(|| UlimitError::Name(s.to_owned()))?;
    let value = |v: &str| -> Result<u64, UlimitError> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            n => n.parse().map_err(|_| syntax()),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => {
            let v = value(values)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(UlimitError::SoftAboveHard(s.to_owned()));
    }
    Ok(Rlimit {
        name,
        soft,
        hard,
        lower_to_caller: true,
    })
}

/// Why a limit could not be set.
#[derive(Debug, thiserror::Error)]
#[error("setting {name} to {soft}:{hard}{hint}")]
pub struct SetError {
    /// `RLIMIT_...`.
    pub name: String,
    /// The soft limit asked.
    pub soft: String,
    /// The hard limit asked.
    pub hard: String,
    /// Why, when the cause alone does not say it.
    pub hint: String,
    /// The cause.
    #[source]
    pub err: std::io::Error,
}

fn resource(name: RlimitName) -> Resource {
    match name {
        RlimitName::Cpu => Resource::Cpu,
        RlimitName::Fsize => Resource::Fsize,
        RlimitName::Data => Resource::Data,
        RlimitName::Stack => Resource::Stack,
        RlimitName::Core => Resource::Core,
        RlimitName::Rss => Resource::Rss,
        RlimitName::Nproc => Resource::Nproc,
        RlimitName::Nofile => Resource::Nofile,
        RlimitName::Memlock => Resource::Memlock,
        RlimitName::As => Resource::As,
        RlimitName::Locks => Resource::Locks,
        RlimitName::Sigpending => Resource::Sigpending,
        RlimitName::Msgqueue => Resource::Msgqueue,
        RlimitName::Nice => Resource::Nice,
        RlimitName::Rtprio => Resource::Rtprio,
        RlimitName::Rttime => Resource::Rttime,
    }
}

/// `RLIM_INFINITY` as rustix has it.
fn value(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

/// The soft and hard limits to set for `r` when the current hard limit is `max` (`None`:
/// unlimited).
fn wanted(r: &Rlimit, max: Option<u64>) -> (Option<u64>, Option<u64>) {
    let (soft, hard) = (value(r.soft), value(r.hard));
    if !r.lower_to_caller {
        return (soft, hard);
    }
    let cap = |v: Option<u64>| match (v, max) {
        (Some(v), Some(m)) => Some(v.min(m)),
        (None, m) => m,
        (v, None) => v,
    };
    (cap(soft), cap(hard))
}

/// Sets `limits` on the calling process (the init, before it execs). A limit with
/// [`Rlimit::lower_to_caller`] is lowered to the current hard limit when above it; any other
/// is set as given, and fails as setrlimit(2) fails (raising a hard limit needs
/// `CAP_SYS_RESOURCE`, which root on some hosts lacks), as with runc.
pub fn apply(limits: &[Rlimit]) -> Result<(), SetError> {
    for r in limits {
        let res = resource(r.name);
        let max = getrlimit(res).maximum;
        let (soft, hard) = wanted(r, max);
        setrlimit(
            res,
            RRlimit {
                current: soft,
                maximum: hard,
            },
        )
        .map_err(|e| {
            let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
            let hint = match (e, max) {
                (rustix::io::Errno::PERM, Some(m)) if hard.is_none_or(|h| h > m) => format!(
                    " (above this process's hard limit {m}: raising it needs CAP_SYS_RESOURCE)"
                ),
                (rustix::io::Errno::INVAL, _)
                    if soft.is_none_or(|s| hard.is_some_and(|h| s > h)) =>
                {
                    " (the soft limit is above the hard one)".to_owned()
                }
                _ => String::new(),
            };
            SetError {
                name: r.name.oci_name(),
                soft: show(soft),
                hard: show(hard),
                hint,
                err: e.into(),
            }
        })?;
    }
    Ok(())
}

/// Sets `limit` in `limits`, replacing a limit of the same name.
pub fn set(limits: &mut Vec<Rlimit>, limit: Rlimit) {
    limits.retain(|r| r.name != limit.name);
    limits.push(limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_like_docker() {
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((r.name, r.soft, r.hard), (RlimitName::Nofile, 1024, 2048));
        let r = parse_ulimit("NPROC=100").unwrap();
        assert_eq!((r.name, r.soft, r.hard), (RlimitName::Nproc, 100, 100));
        let r = parse_ulimit("memlock=-1:-1").unwrap();
        assert_eq!((r.soft, r.hard), (u64::MAX, u64::MAX));
        assert!(matches!(
            parse_ulimit("nofile"),
            Err(UlimitError::Syntax(_))
        ));
        assert!(matches!(parse_ulimit("bogus=1"), Err(UlimitError::Name(_))));
        // Every kind docker knows, by its name.
        for (name, kind) in [
            ("as", RlimitName::As),
            ("fsize", RlimitName::Fsize),
            ("cpu", RlimitName::Cpu),
            ("data", RlimitName::Data),
            ("rss", RlimitName::Rss),
            ("locks", RlimitName::Locks),
            ("sigpending", RlimitName::Sigpending),
            ("msgqueue", RlimitName::Msgqueue),
            ("nice", RlimitName::Nice),
            ("rtprio", RlimitName::Rtprio),
            ("rttime", RlimitName::Rttime),
        ] {
            let r = parse_ulimit(&format!("{name}=7:9")).unwrap();
            assert_eq!((r.name, r.soft, r.hard), (kind, 7, 9), "{name}");
            assert!(r.lower_to_caller, "{name}");
        }
        assert!(matches!(
            parse_ulimit("nofile=10:5"),
            Err(UlimitError::SoftAboveHard(_))
        ));
        assert!(matches!(
            parse_ulimit("nofile=x"),
            Err(UlimitError::Syntax(_))
        ));
    }

    #[test]
    fn set_replaces_the_same_name() {
        let mut l = vec![parse_ulimit("nofile=1").unwrap()];
        set(&mut l, parse_ulimit("nofile=2:3").unwrap());
        set(&mut l, parse_ulimit("core=0").unwrap());
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hard, 3);
    }

    #[test]
    fn only_corrals_own_limits_are_lowered_to_the_callers() {
        let mut r = parse_ulimit("nofile=1048576:unlimited").unwrap();
        assert_eq!(wanted(&r, Some(20000)), (Some(20000), Some(20000)));
        assert_eq!(wanted(&r, None), (Some(1048576), None));
        r.lower_to_caller = false;
        assert_eq!(wanted(&r, Some(20000)), (Some(1048576), None));
        let low = parse_ulimit("as=1024:2048").unwrap();
        assert_eq!(wanted(&low, Some(20000)), (Some(1024), Some(2048)));
    }

    #[test]
    fn a_limit_is_set_on_the_calling_process() {
        // Lowering a soft limit needs no privilege; the core size is harmless to change.
        let cur = getrlimit(Resource::Core);
        let hard = cur.maximum.unwrap_or(u64::MAX);
        let r = Rlimit {
            name: RlimitName::Core,
            soft: 0,
            hard,
            lower_to_caller: false,
        };
        apply(&[r]).unwrap();
        assert_eq!(getrlimit(Resource::Core).current, Some(0));
        setrlimit(Resource::Core, cur).unwrap();
    }
}
