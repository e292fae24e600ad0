//! corral's default seccomp profile, modelled on docker's and podman's: an allowlist of what
//! ordinary programs call, ENOSYS for everything else, EPERM for the dangerous calls.
//!
//! - **Default ENOSYS**, not docker's EPERM: a system call the list does not know (one added
//!   to the kernel after the list was written) looks absent, and libraries fall back to the
//!   older call, as glibc does from `clone3` to `clone` and from `statx` to `fstatat`.
//! - **Explicit EPERM** for calls that exist but must not work in a container (mounts, module
//!   loading, kexec, keyrings, bpf, ptrace, namespaces, clocks ...): "Operation not
//!   permitted" says what happened. Most of them already fail for lack of a capability; the
//!   filter is the second wall, and it also covers kernel bugs reachable without capabilities.
//! - `clone` is allowed unless its flags ask for a new namespace (EPERM); `clone3`, whose
//!   flags sit in memory a filter cannot read, is ENOSYS so that glibc falls back to `clone`.
//! - `personality` is allowed for the harmless personas docker allows (`PER_LINUX`,
//!   `PER_LINUX32`, either with `UNAME26`, and the query `0xffffffff`); anything else, such
//!   as `ADDR_NO_RANDOMIZE` (which turns ASLR off), is EPERM.
//! - Left out, so ENOSYS: `io_uring_*` (docker dropped them after a run of kernel CVEs;
//!   programs fall back to epoll or threads), NUMA policy, `modify_ldt`, `memfd_secret`,
//!   `lsm_*`, the new mount-listing calls.
//!
//! Rules whose `includes.caps` docker uses (a container given `CAP_SYS_ADMIN` may mount) are
//! not reproduced: corral adds capabilities only with `--cap-add`, and a user who grants
//! `CAP_SYS_ADMIN` can pass `seccomp=unconfined` or a profile.

use super::profile::{Action, ArgCondition, ArgOp, SeccompProfile, SyscallRule, EPERM};

/// ENOSYS.
const ENOSYS: u32 = 38;

/// System calls allowed whatever their arguments.
pub const ALLOWED: &[&str] = &[
    // Files: descriptors, reading and writing.
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "close_range",
    "lseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "truncate",
    "ftruncate",
    "fallocate",
    "fadvise64",
    "readahead",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "ioctl",
    "pipe",
    "pipe2",
    // Files: metadata and the tree.
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "chroot",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "umask",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "getxattrat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "setxattrat",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "listxattrat",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "removexattrat",
    "cachestat",
    // Waiting for events.
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    // Memory.
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    "msync",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "remap_file_pages",
    "membarrier",
    "memfd_create",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "map_shadow_stack",
    "mseal",
    // Processes and threads.
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "futex",
    "futex_waitv",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "rseq",
    "arch_prctl",
    "prctl",
    "set_thread_area",
    "get_thread_area",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "pidfd_open",
    "pidfd_send_signal",
    "process_mrelease",
    "restart_syscall",
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    // Credentials (capabilities decide what may change).
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capget",
    "capset",
    // Scheduling and limits.
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_getattr",
    "sched_setattr",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "uname",
    "sysinfo",
    "getcpu",
    "getrandom",
    // Signals.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "kill",
    "tkill",
    "tgkill",
    "pause",
    "alarm",
    // Time (reading it; setting it is EPERM).
    "time",
    "gettimeofday",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    // Sockets.
    "socket",
    "socketpair",
    "bind",
    "connect",
    "listen",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "setsockopt",
    "getsockopt",
    // System V and POSIX IPC (the container has its own IPC namespace).
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
];

/// System calls that exist but fail with EPERM.
pub const DENIED: &[&str] = &[
    // Mounts and the root.
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    // Namespaces (clone's flags are filtered below).
    "setns",
    "unshare",
    // The machine.
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "lookup_dcookie",
    "_sysctl",
    "sysfs",
    "uselib",
    // Kernel modules.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    // Keyrings (not namespaced).
    "keyctl",
    "add_key",
    "request_key",
    // Kernel programs, tracing, other processes' memory.
    "bpf",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "userfaultfd",
    "fanotify_init",
    // File handles bypass the mount namespace (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
    // Clocks.
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
];

/// The namespace flags `clone` may not be given.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0200_0000 // CLONE_NEWCGROUP
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000; // CLONE_NEWNET

/// `personality` values allowed: PER_LINUX, PER_LINUX32, each with UNAME26, and the query.
pub const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

fn rule(
    names: &[&str],
    action: Action,
    errno: Option<u32>,
    args: Vec<ArgCondition>,
) -> SyscallRule {
    SyscallRule {
        names: names.iter().map(|s| s.to_string()).collect(),
        name: None,
        action,
        errno_ret: errno,
        args,
        includes: None,
        excludes: None,
    }
}

fn arg0(op: ArgOp, value: u64, value_two: u64) -> ArgCondition {
    ArgCondition {
        index: 0,
        value,
        value_two,
        op,
    }
}

/// The default profile.
pub fn default_profile() -> SeccompProfile {
    let mut syscalls = vec![
        rule(ALLOWED, Action::Allow, None, Vec::new()),
        rule(DENIED, Action::Errno, Some(EPERM), Vec::new()),
        // clone without namespace flags ...
        rule(
            &["clone"],
            Action::Allow,
            None,
            vec![arg0(ArgOp::MaskedEq, CLONE_NAMESPACE_FLAGS, 0)],
        ),
    ];
    // ... and EPERM with any of them: one alternative per flag.
    let mut bit = 1u64;
    while bit <= CLONE_NAMESPACE_FLAGS {
        if CLONE_NAMESPACE_FLAGS & bit != 0 {
            syscalls.push(rule(
                &["clone"],
                Action::Errno,
                Some(EPERM),
                vec![arg0(ArgOp::MaskedEq, bit, bit)],
            ));
        }
        bit <<= 1;
    }
    syscalls.push(rule(&["clone3"], Action::Errno, Some(ENOSYS), Vec::new()));
    // personality: the harmless values (conditions on one argument are alternatives) ...
    syscalls.push(rule(
        &["personality"],
        Action::Allow,
        None,
        PERSONALITIES
            .iter()
            .map(|&p| arg0(ArgOp::Eq, p, 0))
            .collect(),
    ));
    // ... and EPERM for every other one.
    syscalls.push(personality_denied());
    SeccompProfile {
        default_action: Action::Errno,
        default_errno_ret: Some(ENOSYS),
        architectures: vec!["SCMP_ARCH_X86_64".into()],
        syscalls,
        listener_path: None,
        listener_metadata: None,
    }
}

/// EPERM for `personality` with any value but the allowed ones: a conjunction of NE
/// conditions on argument 0. docker's format reads conditions that are all on the same
/// argument as alternatives, so a condition on argument 1 that always holds
/// (`arg1 & 0 == 0`) makes the rule a conjunction.
fn personality_denied() -> SyscallRule {
    let mut args: Vec<ArgCondition> = PERSONALITIES
        .iter()
        .map(|&p| arg0(ArgOp::Ne, p, 0))
        .collect();
    args.push(ArgCondition {
        index: 1,
        value: 0,
        value_two: 0,
        op: ArgOp::MaskedEq,
    });
    rule(&["personality"], Action::Errno, Some(EPERM), args)
}
