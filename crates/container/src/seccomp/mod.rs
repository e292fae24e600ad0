//! Seccomp: the system call filter the init installs just before it execs the workload.
//!
//! A [`SeccompProfile`] (docker's JSON format, [`profile`]) is compiled to classic BPF with
//! `seccompiler` (rust-vmm) and installed with `seccomp(2)`. The default is
//! [`default_profile::default_profile`]: an allowlist, ENOSYS for the rest, EPERM for the
//! dangerous calls. `--security-opt seccomp=unconfined` stores no profile at all.
//!
//! # Compiling: a stack of filters
//!
//! seccompiler's filters have one action on match and one on mismatch, while a profile gives
//! each rule its own action. A profile therefore compiles to a short stack of filters, which
//! the kernel runs together, keeping the strongest result (in order: KILL_PROCESS,
//! KILL_THREAD, TRAP, ERRNO, LOG, ALLOW) and, between equals, the one of the filter installed
//! last (`seccomp_run_filters` in kernel/seccomp.c):
//!
//! 1. the base filter: every call some rule names (under the rule's argument conditions)
//!    passes (ALLOW), everything else gets the default action;
//! 2. one filter per other action, in order of first use: the calls of the rules with that
//!    action get it, everything else passes.
//!
//! So a call that no rule matches gets the default action; a call an ALLOW rule matches
//! passes; a call another rule matches gets that rule's action, which wins over the default
//! ERRNO because its filter is installed later. Where rules with different actions match the
//! same call, the strongest action wins (libseccomp refuses such profiles; docker's own does
//! not contain any). Rules whose action is the default action change nothing and are skipped;
//! names this architecture does not have are skipped, as libseccomp does.
//!
//! Argument conditions compare all 64 bits. Within a rule they are a conjunction, except that
//! conditions all on the same argument are alternatives: docker's reading, which its default
//! profile relies on (`personality` with several allowed values).
//!
//! # Installing: when, and with which privileges
//!
//! Installing a filter needs no_new_privs or `CAP_SYS_ADMIN`. corral does not force
//! no_new_privs (setuid programs in the image keep working, as under docker), so, as runc
//! does:
//!
//! - with `no-new-privileges`, the init installs the filter as the very last step, after the
//!   capability drop, the credential change and no_new_privs, right before `execve`: the
//!   filter then only has to allow `execve` itself (and what std's `exec` does just before
//!   it: signal mask and dispositions);
//! - without it, the init installs the filter just before it drops privileges, while
//!   `CAP_SYS_ADMIN` is still effective. The filter must then allow what the init still does
//!   afterwards: `prctl` (bounding set, parent-death signal), `capget`/`capset`, `setgroups`,
//!   `setresgid`/`setresuid`, `rt_sigprocmask`/`rt_sigaction`, `execve`, and on failure `write`
//!   and `exit_group`. The default profile allows all of them; a custom profile that denies
//!   one makes the start fail with that step's error, as it does under runc.
//!
//! Either way the filter is compiled (and a bad profile reported) before any of this, and it
//! is installed with `SECCOMP_FILTER_FLAG_TSYNC` so that it covers every thread (the init has
//! one; the flag makes that an enforced fact rather than an assumption).
//!
//! seccompiler's own `apply_filter` is not used because it always sets no_new_privs first:
//! the one `unsafe` block here is the `seccomp(2)` call itself.
//!
//! Limits: filters are built for x86_64 only so far (the syscall table); elsewhere a profile
//! is an error that names `seccomp=unconfined`. `SCMP_ACT_NOTIFY` rules are compiled as a
//! marked TRACE return rewritten to `SECCOMP_RET_USER_NOTIF` (seccompiler has no such action),
//! in a program of their own installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; its listener
//! goes to the agent ([`notify`]). Processes `exec`'d into the container get the rest of the
//! filter but no listener: their notified calls fail with ENOSYS.

pub mod default_profile;
pub mod notify;
pub mod profile;
#[cfg(target_arch = "x86_64")]
mod syscalls_x86_64;

use std::collections::BTreeMap;

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

pub use default_profile::default_profile;
pub use profile::{Action, ArgCondition, ArgOp, SeccompProfile, SyscallRule};

/// The kernel's limit on the instructions of all stacked filters together
/// (`MAX_INSNS_PER_PATH`), each filter counting 4 more.
const MAX_STACK_INSNS: usize = 32768;

/// Compiling or installing a filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// No syscall table for this architecture.
    #[error(
        "seccomp filters are not built for {0} yet: run with --security-opt seccomp=unconfined"
    )]
    UnsupportedArch(&'static str),
    /// seccompiler refused the filter (too large, bad argument).
    #[error("compiling the seccomp filter")]
    Compile(#[source] BackendError),
    /// The stacked filters are larger than the kernel accepts.
    #[error("the seccomp filter has {0} instructions; the kernel accepts {MAX_STACK_INSNS}")]
    TooLarge(usize),
    /// `seccomp(2)` failed.
    #[error("installing the seccomp filter")]
    Install(#[source] std::io::Error),
    /// Another thread could not be synchronised (TSYNC).
    #[error("installing the seccomp filter: thread {0} has a conflicting filter")]
    ThreadSync(i64),
}

/// A compiled profile: BPF programs in the order they are to be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    programs: Vec<BpfProgram>,
    /// The program whose matches go to a user-space agent, if any.
    notify: Option<usize>,
}

/// The TRACE message that stands for `SECCOMP_RET_USER_NOTIF` while seccompiler builds the
/// program (it has no such action).
const NOTIFY_MARK: u32 = 0xfeed;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;

impl Filters {
    /// The programs, in install order.
    pub fn programs(&self) -> &[BpfProgram] {
        &self.programs
    }

    /// Instructions in all programs.
    pub fn len(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }

    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }

    /// Whether a program hands calls to a user-space agent (`SCMP_ACT_NOTIFY`).
    pub fn has_notify(&self) -> bool {
        self.notify.is_some()
    }
}

/// The x86_64 number of a system call, by name.
pub fn syscall_number(name: &str) -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        let t = syscalls_x86_64::SYSCALLS;
        t.binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| t[i].1)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        None
    }
}

/// When a call matches: always, or when any of the rules holds.
#[derive(Debug, Clone)]
enum Match {
    Always,
    When(Vec<SeccompRule>),
}

impl Match {
    fn merge(map: &mut BTreeMap<i64, Match>, nr: i64, m: &Match) {
        match (map.get_mut(&nr), m) {
            (None, _) => {
                map.insert(nr, m.clone());
            }
            (Some(Match::Always), _) => {}
            (Some(slot), Match::Always) => *slot = Match::Always,
            (Some(Match::When(have)), Match::When(add)) => have.extend(add.iter().cloned()),
        }
    }
}

fn action(a: Action, errno: Option<u32>) -> SeccompAction {
    match a {
        Action::Allow => SeccompAction::Allow,
        Action::Errno => SeccompAction::Errno(errno.unwrap_or(profile::EPERM)),
        Action::Kill | Action::KillThread => SeccompAction::KillThread,
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Log => SeccompAction::Log,
        Action::Trace => SeccompAction::Trace(errno.unwrap_or(0) & 0xffff),
        Action::Notify => SeccompAction::Trace(NOTIFY_MARK),
    }
}

fn condition(a: &ArgCondition) -> Result<SeccompCondition, SeccompError> {
    let (op, value) = match a.op {
        ArgOp::Eq => (SeccompCmpOp::Eq, a.value),
        ArgOp::Ne => (SeccompCmpOp::Ne, a.value),
        ArgOp::Lt => (SeccompCmpOp::Lt, a.value),
        ArgOp::Le => (SeccompCmpOp::Le, a.value),
        ArgOp::Gt => (SeccompCmpOp::Gt, a.value),
        ArgOp::Ge => (SeccompCmpOp::Ge, a.value),
        ArgOp::MaskedEq => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
    };
    let index = u8::try_from(a.index).unwrap_or(u8::MAX);
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(SeccompError::Compile)
}

/// A rule's argument conditions as a [`Match`] (docker's reading: see the module doc).
fn matcher(args: &[ArgCondition]) -> Result<Match, SeccompError> {
    if args.is_empty() {
        return Ok(Match::Always);
    }
    let conds = args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
    let one_arg = args.len() > 1 && args.iter().all(|a| a.index == args[0].index);
    let rules = if one_arg {
        conds
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<Vec<_>, _>>()
    } else {
        SeccompRule::new(conds).map(|r| vec![r])
    };
    rules.map(Match::When).map_err(SeccompError::Compile)
}

fn program(
    map: BTreeMap<i64, Match>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let rules = map
        .into_iter()
        .map(|(nr, m)| match m {
            Match::Always => (nr, Vec::new()),
            Match::When(r) => (nr, r),
        })
        .collect();
    let filter =
        SeccompFilter::new(rules, mismatch, matched, arch).map_err(SeccompError::Compile)?;
    BpfProgram::try_from(filter).map_err(SeccompError::Compile)
}

/// Compiles `profile` for a container with capabilities `caps` (for the rules' `includes`
/// and `excludes`).
pub fn compile(profile: &SeccompProfile, caps: &[String]) -> Result<Filters, SeccompError> {
    let arch_name = std::env::consts::ARCH;
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedArch(arch_name));
    }
    let arch =
        TargetArch::try_from(arch_name).map_err(|_| SeccompError::UnsupportedArch(arch_name))?;
    let default = action(profile.default_action, profile.default_errno_ret);

    // Calls the base filter lets through, and the calls of each other action.
    let mut passes: BTreeMap<i64, Match> = BTreeMap::new();
    let mut others: Vec<(SeccompAction, BTreeMap<i64, Match>)> = Vec::new();
    for r in profile.syscalls.iter().filter(|r| r.applies(caps)) {
        let act = action(r.action, r.errno_ret);
        if act == default {
            continue;
        }
        let nrs: Vec<i64> = r.all_names().filter_map(syscall_number).collect();
        if nrs.is_empty() {
            continue;
        }
        let m = matcher(&r.args)?;
        let mut own = None;
        if act != SeccompAction::Allow {
            let i = match others.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    others.push((act, BTreeMap::new()));
                    others.len() - 1
                }
            };
            own = Some(&mut others[i].1);
        }
        for nr in nrs {
            Match::merge(&mut passes, nr, &m);
            if let Some(map) = own.as_deref_mut() {
                Match::merge(map, nr, &m);
            }
        }
    }

    let mut programs = Vec::new();
    if default != SeccompAction::Allow || others.is_empty() {
        // With an ALLOW default and no other rule, this is the filter that allows everything:
        // the profile still shows as a filter (`Seccomp: 2`), as it does under docker.
        let matched = if default == SeccompAction::Allow {
            SeccompAction::Log
        } else {
            SeccompAction::Allow
        };
        let base = if default == SeccompAction::Allow {
            BTreeMap::new()
        } else {
            passes
        };
        programs.push(program(base, default, matched, arch)?);
    }
    let mut notify = None;
    for (act, map) in others {
        let is_notify = act == SeccompAction::Trace(NOTIFY_MARK);
        let mut p = program(map, SeccompAction::Allow, act, arch)?;
        if is_notify && profile.syscalls.iter().any(|r| r.action == Action::Notify) {
            for insn in p.iter_mut().filter(|i| i.code == RET_K) {
                if insn.k == SECCOMP_RET_TRACE | NOTIFY_MARK {
                    insn.k = SECCOMP_RET_USER_NOTIF;
                }
            }
            notify = Some(programs.len());
        }
        programs.push(p);
    }
    let total: usize = programs.iter().map(|p| p.len() + 4).sum();
    if total > MAX_STACK_INSNS {
        return Err(SeccompError::TooLarge(total));
    }
    Ok(Filters { programs, notify })
}

/// Installs the filters on every thread of the calling process (TSYNC), in order. The caller
/// has no_new_privs set or `CAP_SYS_ADMIN` effective (see the module doc). Returns the
/// listener of the user-notification program, if the profile has one (installed without TSYNC,
/// which the kernel does not combine with a listener: the caller must be single-threaded).
pub fn install(filters: &Filters) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
    let mut listener = None;
    for (i, p) in filters.programs.iter().enumerate() {
        let prog = libc::sock_fprog {
            // seccompiler refuses programs of more than BPF_MAX_LEN (4096) instructions.
            len: u16::try_from(p.len()).map_err(|_| SeccompError::TooLarge(p.len()))?,
            // seccompiler's `sock_filter` is `#[repr(C)]` with the same fields as the kernel's
            // (and libc's): u16 code, u8 jt, u8 jf, u32 k.
            filter: p.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        let notify = filters.notify == Some(i);
        let flags = if notify {
            SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            libc::SECCOMP_FILTER_FLAG_TSYNC
        };
        // SAFETY: `prog` points at `p`, which outlives the call; the kernel only reads the
        // program (copy_from_user) and keeps no pointer to it. The flags and operation are
        // constants the kernel validates.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        } else if notify {
            let fd = i32::try_from(rc).map_err(|_| SeccompError::ThreadSync(rc))?;
            // SAFETY: with NEW_LISTENER the kernel returns a new descriptor, ours alone.
            #[allow(unsafe_code)]
            let owned = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            listener = Some(owned);
        } else if rc > 0 {
            // With TSYNC, a positive result is the id of a thread that could not be
            // synchronised.
            return Err(SeccompError::ThreadSync(rc));
        }
    }
    Ok(listener)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO: u32 = 0x0005_0000;
    const LOG: u32 = 0x7ffc_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

    /// Runs one classic BPF program (the instructions seccompiler emits) on a call.
    fn run(prog: &BpfProgram, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr as u32,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let a = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                0x20 => acc = word(i.k),
                0x54 => acc &= i.k,
                0x05 => pc += i.k as usize,
                0x15 | 0x25 | 0x35 => {
                    let hit = match i.code {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += if hit { i.jt } else { i.jf } as usize;
                }
                0x06 => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    /// The kernel's combination of stacked filters: the strongest action; among equals, the
    /// last installed.
    fn eval(f: &Filters, nr: i64, args: [u64; 6]) -> u32 {
        let mut ret = ALLOW;
        for p in f.programs().iter().rev() {
            let cur = run(p, AUDIT_ARCH_X86_64, nr, args);
            if ((cur & 0xffff_0000) as i32) < ((ret & 0xffff_0000) as i32) {
                ret = cur;
            }
        }
        ret
    }

    fn nr(name: &str) -> i64 {
        syscall_number(name).unwrap_or_else(|| panic!("{name}"))
    }

    fn call(f: &Filters, name: &str, arg0: u64) -> u32 {
        eval(f, nr(name), [arg0, 0, 0, 0, 0, 0])
    }

    const EPERM: u32 = ERRNO | 1;
    const ENOSYS: u32 = ERRNO | 38;

    #[test]
    fn syscall_table_is_sorted_and_knows_the_basics() {
        let t = syscalls_x86_64::SYSCALLS;
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("clone3"), Some(435));
        assert_eq!(syscall_number("_sysctl"), Some(156));
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[test]
    fn default_profile_names_only_real_calls() {
        let p = default_profile();
        for r in &p.syscalls {
            for n in r.all_names() {
                assert!(
                    syscall_number(n).is_some(),
                    "{n} is not an x86_64 system call"
                );
            }
        }
        let allowed: std::collections::HashSet<_> = default_profile::ALLOWED.iter().collect();
        for d in default_profile::DENIED {
            assert!(!allowed.contains(d), "{d} is both allowed and denied");
        }
    }

    #[test]
    fn default_profile_allows_ordinary_calls_and_denies_dangerous_ones() {
        let f = compile(&default_profile(), &[]).unwrap();
        for name in [
            "read", "write", "openat", "mmap", "execve", "wait4", "socket", "getpid",
        ] {
            assert_eq!(call(&f, name, 0), ALLOW, "{name}");
        }
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "bpf",
            "ptrace",
            "keyctl",
            "setns",
            "unshare",
            "kexec_load",
            "init_module",
            "open_by_handle_at",
            "clock_settime",
            "fsopen",
            "mount_setattr",
            "userfaultfd",
            "reboot",
            "swapon",
            "syslog",
        ] {
            assert_eq!(call(&f, name, 0), EPERM, "{name}");
        }
        // Unknown to the list: ENOSYS, so that programs fall back.
        for name in ["io_uring_setup", "clone3", "modify_ldt"] {
            assert_eq!(call(&f, name, 0), ENOSYS, "{name}");
        }
        assert_eq!(eval(&f, 1000, [0; 6]), ENOSYS);
        // x32 numbers (bit 30) are never allowed.
        assert_eq!(eval(&f, 0x4000_0000, [0; 6]), ENOSYS);
        // Another architecture's calls kill the process.
        let p = &f.programs()[0];
        assert_eq!(run(p, 0x4000_0003, 0, [0; 6]), 0x8000_0000);
    }

    #[test]
    fn clone_with_namespace_flags_is_eperm() {
        let f = compile(&default_profile(), &[]).unwrap();
        // fork()-like and pthread_create()-like clones.
        assert_eq!(call(&f, "clone", 0x0120_0011), ALLOW);
        assert_eq!(call(&f, "clone", 0x003d_0f00), ALLOW);
        for flag in [
            0x0002_0000,
            0x0400_0000,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000u64,
        ] {
            assert_eq!(call(&f, "clone", 0x11 | flag), EPERM, "{flag:#x}");
        }
    }

    #[test]
    fn personality_allows_only_harmless_values() {
        let f = compile(&default_profile(), &[]).unwrap();
        for v in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(call(&f, "personality", v), ALLOW, "{v:#x}");
        }
        for v in [0x40000, 0x0040_0000, 1] {
            assert_eq!(call(&f, "personality", v), EPERM, "{v:#x}");
        }
    }

    #[test]
    fn allow_default_with_one_errno_rule() {
        let p = SeccompProfile::from_json(
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat", "not_a_call"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let f = compile(&p, &[]).unwrap();
        assert_eq!(f.programs().len(), 1);
        assert_eq!(call(&f, "mkdir", 0), EPERM);
        assert_eq!(call(&f, "mkdirat", 0), EPERM);
        assert_eq!(call(&f, "read", 0), ALLOW);
        assert_eq!(call(&f, "write", 0), ALLOW);
    }

    #[test]
    fn argument_ops_and_actions() {
        let p = SeccompProfile::from_json(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LT"}]},
                {"names": ["read"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
                          {"index": 2, "value": 4096, "op": "SCMP_CMP_LE"}]},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 255, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GT"}]}
            ]}"#,
        )
        .unwrap();
        let f = compile(&p, &[]).unwrap();
        let e = |name: &str, args: [u64; 6]| eval(&f, nr(name), args);
        assert_eq!(e("read", [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(e("read", [5, 0, 0, 0, 0, 0]), ENOSYS);
        assert_eq!(e("read", [10, 0, 100, 0, 0, 0]), LOG);
        assert_eq!(e("read", [10, 0, 5000, 0, 0, 0]), ENOSYS);
        // All 64 bits count: this is not below 3.
        assert_eq!(e("read", [(1 << 40) | 2, 0, 0, 0, 0, 0]), LOG);
        assert_eq!(e("write", [1, 0x107, 0, 0, 0, 0]), ERRNO | 13);
        assert_eq!(e("write", [1, 0x108, 0, 0, 0, 0]), ALLOW);
        assert_eq!(e("kill", [1, 9, 0, 0, 0, 0]), 0x8000_0000);
        assert_eq!(e("kill", [1, 15, 0, 0, 0, 0]), 0x0003_0000);
        assert_eq!(e("getpid", [6, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(e("getpid", [5, 0, 0, 0, 0, 0]), ENOSYS);
    }

    #[test]
    fn capability_conditions_select_rules() {
        let p = SeccompProfile::from_json(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let without = compile(&p, &["CAP_CHOWN".into()]).unwrap();
        let with = compile(&p, &["CAP_SYS_ADMIN".into()]).unwrap();
        assert_eq!(call(&without, "mount", 0), EPERM);
        assert_eq!(call(&with, "mount", 0), ALLOW);
    }

    #[test]
    fn allow_everything_is_still_a_filter() {
        let p = SeccompProfile::from_json(br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
        let f = compile(&p, &[]).unwrap();
        assert_eq!(f.programs().len(), 1);
        assert_eq!(call(&f, "mount", 0), ALLOW);
    }

    #[test]
    fn huge_profiles_are_refused_not_truncated() {
        let names: Vec<String> = syscalls_x86_64::SYSCALLS
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect();
        let args: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"index": 0, "value": {i}, "op": "SCMP_CMP_EQ"}}"#))
            .collect();
        let text = format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{{"names": [{}], "action": "SCMP_ACT_ALLOW", "args": [{}]}}]}}"#,
            names.join(","),
            args.join(",")
        );
        let p = SeccompProfile::from_json(text.as_bytes()).unwrap();
        assert!(compile(&p, &[]).is_err());
    }
}
