//! docker's `--ulimit NAME=SOFT[:HARD]` for the limits corral sets
//! ([`crate::config::RlimitName`]): the hard limit defaults to the soft one, `-1` or
//! `unlimited` means no limit. Values above the caller's hard limit are lowered to it by the
//! init (raising a hard limit needs `CAP_SYS_RESOURCE`).

use crate::config::{Rlimit, RlimitName};

/// A `--ulimit` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum UlimitError {
    /// Not `NAME=SOFT[:HARD]`.
    #[error("--ulimit {0:?}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")]
    Syntax(String),
    /// A name corral does not set.
    #[error("--ulimit {0:?}: supported limits: nofile, nproc, core, memlock, stack")]
    Name(String),
    /// Soft above hard.
    #[error("--ulimit {0:?}: the soft limit is above the hard limit")]
    SoftAboveHard(String),
}

/// Parses one `--ulimit` value.
pub fn parse_ulimit(s: &str) -> Result<Rlimit, UlimitError> {
    let syntax = || UlimitError::Syntax(s.to_owned());
    let (name, values) = s.split_once('=').ok_or_else(syntax)?;
    let name = match name.trim().to_ascii_lowercase().as_str() {
        "nofile" => RlimitName::Nofile,
        "nproc" => RlimitName::Nproc,
        "core" => RlimitName::Core,
        "memlock" => RlimitName::Memlock,
        "stack" => RlimitName::Stack,
        _ => return Err(UlimitError::Name(s.to_owned())),
    };
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
    Ok(Rlimit { name, soft, hard })
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
        assert!(matches!(parse_ulimit("cpu=1"), Err(UlimitError::Name(_))));
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
}
