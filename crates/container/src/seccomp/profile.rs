//! A seccomp profile in docker's JSON format, the form `--security-opt seccomp=FILE` reads and
//! the form `config.json` stores.
//!
//! The fields corral honours: `defaultAction`, `defaultErrnoRet`, `architectures` (kept, not
//! used: the filter is always for the native ABI), and `syscalls[]` with `names` (or the older
//! single `name`), `action`, `errnoRet`, `args[]` (`index`, `value`, `valueTwo`, `op`) and the
//! `includes`/`excludes` conditions on `caps` and `arches`. Everything else (`archMap`,
//! `comment`, `minKernel`, `flags`, `listenerPath` ...) is ignored, as unknown fields are.
//!
//! The file is hostile input: it is only ever deserialised into these plain types (no
//! recursion beyond serde_json's depth limit, no allocation driven by numbers in the file), its
//! size is capped, and [`SeccompProfile::validate`] rejects what the compiler could not
//! express (argument index above 5, errno above 4095, an empty `names`).

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

/// The largest profile file read: docker's own default profile is about 20 KiB.
pub const MAX_PROFILE_BYTES: u64 = 4 << 20;

/// The largest errno a filter can return (the kernel's `MAX_ERRNO`).
pub const MAX_ERRNO: u32 = 4095;

/// EPERM, the errno of `SCMP_ACT_ERRNO` when the profile names none (as docker).
pub const EPERM: u32 = 1;

/// A seccomp profile (docker's format).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// What happens to a system call no rule matches.
    pub default_action: Action,
    /// The errno of a `SCMP_ACT_ERRNO` default action (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures named by the profile (`SCMP_ARCH_X86_64` ...): kept for display only.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    /// The rules, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub syscalls: Vec<SyscallRule>,
    /// Where the agent of `SCMP_ACT_NOTIFY` rules listens (a UNIX socket of the host): the
    /// filter's listener descriptor is sent there (see [`super::notify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<std::path::PathBuf>,
    /// An opaque string handed to that agent with the descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
}

/// One rule: an action for a set of system calls, optionally only when arguments match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// System call names. Names this architecture does not have are skipped.
    #[serde(default, deserialize_with = "null_as_default")]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What happens when the rule matches.
    pub action: Action,
    /// The errno of `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions: all must hold, except that conditions all on the same argument
    /// are alternatives (docker's rule, so that one entry can list several allowed values).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<ArgCondition>,
    /// The rule applies only if all of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<RuleFilter>,
    /// The rule applies only if none of these hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<RuleFilter>,
}

/// A condition on one system call argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArgCondition {
    /// Argument index, 0 to 5.
    pub index: u32,
    /// The value compared with (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The expected masked value for `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: ArgOp,
}

/// When a rule applies, by the container's capabilities and the host's architecture.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleFilter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    /// Architectures in docker's (Go's) spelling: `amd64`, `arm64`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
}

/// A seccomp action (libseccomp's names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Let the call through.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// Fail the call with an errno (`errnoRet`, EPERM by default).
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// Kill the calling thread (libseccomp's historical `SCMP_ACT_KILL`).
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    /// Kill the calling thread.
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    /// Hand the call to the agent at `listenerPath` (seccomp user notification).
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
    /// Notify a ptrace tracer, with `errnoRet` as the message (ENOSYS without a tracer).
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    /// Kill the whole process.
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// Send SIGSYS.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// Let the call through and log it.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
}

/// An argument comparison (libseccomp's names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ArgOp {
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    /// `(arg & value) == valueTwo`.
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// A profile that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read.
    #[error("reading seccomp profile {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        err: std::io::Error,
    },
    /// The file is larger than [`MAX_PROFILE_BYTES`].
    #[error("seccomp profile {path} is larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The file is not a profile.
    #[error("seccomp profile {path} is malformed")]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        #[source]
        err: InvalidProfile,
    },
}

/// What is wrong with a profile's text.
#[derive(Debug, thiserror::Error)]
pub enum InvalidProfile {
    /// Not JSON, or not the expected shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A rule names no system call.
    #[error("syscalls[{rule}] names no system call")]
    NoNames {
        /// Index of the rule.
        rule: usize,
    },
    /// An argument index above 5.
    #[error("syscalls[{rule}]: argument index {index} is out of range (0 to 5)")]
    ArgIndex {
        /// Index of the rule.
        rule: usize,
        /// The index given.
        index: u32,
    },
    /// An errno above [`MAX_ERRNO`].
    #[error("{what}: errno {errno} is out of range (0 to {MAX_ERRNO})")]
    Errno {
        /// Where.
        what: String,
        /// The value.
        errno: u32,
    },
    /// A user-notification rule that cannot work.
    #[error("{0}")]
    Notify(String),
}

impl SeccompProfile {
    /// Parses and validates a profile from JSON text.
    pub fn from_json(text: &[u8]) -> Result<Self, InvalidProfile> {
        let p: SeccompProfile = serde_json::from_slice(text)?;
        p.validate()?;
        Ok(p)
    }

    /// Reads, parses and validates a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        use std::io::Read;
        let read = |err| ProfileError::Read {
            path: path.to_owned(),
            err,
        };
        let f = std::fs::File::open(path).map_err(read)?;
        let mut text = Vec::new();
        f.take(MAX_PROFILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::from_json(&text).map_err(|err| ProfileError::Malformed {
            path: path.to_owned(),
            err,
        })
    }

    /// Checks what serde cannot: argument indexes, errno ranges, rules without names.
    pub fn validate(&self) -> Result<(), InvalidProfile> {
        check_errno("defaultErrnoRet", self.default_errno_ret)?;
        if self.default_action == Action::Notify {
            return Err(InvalidProfile::Notify(
                "SCMP_ACT_NOTIFY cannot be the default action: the runtime's own calls would wait on the agent".into(),
            ));
        }
        let notifies = self.syscalls.iter().filter(|r| r.action == Action::Notify);
        for r in notifies {
            if self.listener_path.is_none() {
                return Err(InvalidProfile::Notify(
                    "SCMP_ACT_NOTIFY needs listenerPath: the socket of the agent that answers"
                        .into(),
                ));
            }
            if r.all_names().any(|n| n == "write") {
                return Err(InvalidProfile::Notify(
                    "SCMP_ACT_NOTIFY cannot take write: the runtime reports through it before the agent is told".into(),
                ));
            }
        }
        for (i, r) in self.syscalls.iter().enumerate() {
            if r.names.is_empty() && r.name.is_none() {
                return Err(InvalidProfile::NoNames { rule: i });
            }
            check_errno(&format!("syscalls[{i}].errnoRet"), r.errno_ret)?;
            if let Some(a) = r.args.iter().find(|a| a.index > 5) {
                return Err(InvalidProfile::ArgIndex {
                    rule: i,
                    index: a.index,
                });
            }
        }
        Ok(())
    }
}

impl SyscallRule {
    /// The names of the rule, in both the plural and the older singular form.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .chain(self.name.as_deref())
    }

    /// Whether the rule applies to a container with `caps` on this architecture (docker's
    /// `includes`/`excludes`).
    pub fn applies(&self, caps: &[String]) -> bool {
        let arch = go_arch();
        let has_cap = |c: &String| caps.iter().any(|k| k.eq_ignore_ascii_case(c));
        if let Some(inc) = &self.includes {
            if !inc.caps.iter().all(has_cap) {
                return false;
            }
            if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch) {
                return false;
            }
        }
        if let Some(exc) = &self.excludes {
            if exc.caps.iter().any(has_cap) || exc.arches.iter().any(|a| a == arch) {
                return false;
            }
        }
        true
    }
}

/// This machine's architecture in docker's (Go's) spelling.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn check_errno(what: &str, errno: Option<u32>) -> Result<(), InvalidProfile> {
    match errno {
        Some(e) if e > MAX_ERRNO => Err(InvalidProfile::Errno {
            what: what.to_owned(),
            errno: e,
        }),
        _ => Ok(()),
    }
}

/// `null` reads as the empty value, as Go's encoding/json lets docker's profiles say.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "archMap": null,
        "syscalls": [
            {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW", "comment": "x"},
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": null},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
             "includes": {"arches": ["s390x"]}}
        ]
    }"#;

    #[test]
    fn docker_profile_parses() {
        let p = SeccompProfile::from_json(SAMPLE.as_bytes()).unwrap();
        assert_eq!(p.default_action, Action::Errno);
        assert_eq!(p.default_errno_ret, Some(38));
        assert_eq!(p.syscalls.len(), 5);
        assert_eq!(p.syscalls[1].all_names().collect::<Vec<_>>(), ["mkdir"]);
        assert_eq!(p.syscalls[3].args[0].op, ArgOp::MaskedEq);
        assert!(p.syscalls[3].applies(&["CAP_CHOWN".into()]));
        assert!(!p.syscalls[3].applies(&["CAP_SYS_ADMIN".into()]));
        assert!(!p.syscalls[4].applies(&[]));
    }

    #[test]
    fn profile_round_trips_through_config_json() {
        let p = SeccompProfile::from_json(SAMPLE.as_bytes()).unwrap();
        let text = serde_json::to_vec(&p).unwrap();
        assert_eq!(SeccompProfile::from_json(&text).unwrap(), p);
    }

    #[test]
    fn bad_profiles_are_rejected_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "unknown variant"),
            (r#"{"syscalls": []}"#, "defaultAction"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
                "names no system call",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "argument index 6",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#,
                "errno 70000",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ERRNO", "errnoRet": -1}]}"#,
                "invalid value",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}"#,
                "unknown variant",
            ),
            ("{", "EOF"),
            ("", "EOF"),
        ];
        for (text, want) in cases {
            let err = SeccompProfile::from_json(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
    }

    /// Garbage of every shape must give an error, never a panic or a hang.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"defaultAction\"",
            "\"syscalls\"",
            "\"names\"",
            "\"args\"",
            "\"SCMP_ACT_ALLOW\"",
            "\"SCMP_CMP_EQ\"",
            "\"index\"",
            "null",
            "-1",
            "18446744073709551616",
            "1e999",
            "\"\\u0000\"",
            "true",
            "\"read\"",
            " ",
        ];
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let _ = SeccompProfile::from_json(s.as_bytes());
            let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let _ = SeccompProfile::from_json(&bytes);
        }
        // Deep nesting is refused by serde_json's recursion limit, not by a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(SeccompProfile::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = SeccompProfile::load(&path).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        let err = SeccompProfile::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }
}
