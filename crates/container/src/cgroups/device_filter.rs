//! The v2 devices policy: cgroup2 has no devices files; a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the container's cgroup decides each open and mknod of a device node
//! (what runc and crun do). corral writes the program itself: a dozen instructions per rule,
//! no compiler, no libbpf.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
//! `access_type` being `(access << 16) | type` (type: block 1, char 2; access: mknod 1, read 2,
//! write 4), and returns 1 to allow, 0 to deny. So that a container is allowed exactly what it
//! would be under v1, the rules are first played the way the v1 controller plays writes to
//! `devices.allow`/`devices.deny` ([`V1State`]: a default verdict and a list of exceptions,
//! rules on the same device merging and removing access bits), and the program encodes the
//! outcome: with a default of deny, an access is allowed when one exception covers all of it;
//! with a default of allow, it is denied when any exception covers part of it (runc plays its
//! rules through a v1 emulator for the same reason).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::config::DeviceRule;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (class | op | source) of the few instructions used.
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const MOV64_K: u8 = 0xb7;
const MOV64_X: u8 = 0xbf;
const JNE_K: u8 = 0x55; // if dst != imm goto pc + 1 + off
const JEQ_K: u8 = 0x15; // if dst == imm goto pc + 1 + off
const EXIT: u8 = 0x95;

// Registers: r1 holds the context on entry; the program loads type into r2, access into r3,
// major into r4, minor into r5, and uses r1 as scratch after.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// The `access` bits of the context, in the kernel's order.
fn access_bits(access: &str) -> u32 {
    access.chars().fold(0, |b, c| {
        b | match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        }
    })
}

/// One exception of the v1 state: a device type (`c` or `b`), numbers (`None`: any) and the
/// access bits it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exception {
    kind: char,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

/// What the v1 devices controller holds after a list of rules, starting from deny-all.
#[derive(Debug, Default)]
struct V1State {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl V1State {
    fn play(rules: &[DeviceRule]) -> Self {
        let mut st = V1State::default();
        for r in rules {
            let access = access_bits(&r.access);
            if r.kind == 'a' && r.major.is_none() && r.minor.is_none() && access == 7 {
                // "a": a new default, no exception.
                st.default_allow = r.allow;
                st.exceptions.clear();
                continue;
            }
            // A rule on every type is one on each (as runc splits it).
            let kinds: &[char] = match r.kind {
                'c' => &['c'],
                'b' => &['b'],
                _ => &['c', 'b'],
            };
            for &kind in kinds {
                let ex = Exception {
                    kind,
                    major: r.major,
                    minor: r.minor,
                    access,
                };
                if r.allow != st.default_allow {
                    // An exception to the default: added, or merged into the same device's.
                    match st.exceptions.iter_mut().find(|e| same_device(e, &ex)) {
                        Some(e) => e.access |= access,
                        None => st.exceptions.push(ex),
                    }
                } else {
                    // Agrees with the default: takes those bits off the same device's exception.
                    if let Some(e) = st.exceptions.iter_mut().find(|e| same_device(e, &ex)) {
                        e.access &= !access;
                    }
                    st.exceptions.retain(|e| e.access != 0);
                }
            }
        }
        st
    }
}

fn same_device(a: &Exception, b: &Exception) -> bool {
    a.kind == b.kind && a.major == b.major && a.minor == b.minor
}

/// The program for `rules` (in the order given, from deny-all, as v1 would play them).
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let st = V1State::play(rules);
    let mut p = vec![
        insn(LDX_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_W, R4, R1, 4, 0),
        insn(LDX_W, R5, R1, 8, 0),
    ];
    // The verdict of a matching exception is the opposite of the default.
    let matched = i32::from(!st.default_allow);
    for ex in &st.exceptions {
        // The tests, each jumping past this exception's verdict when it does not hold.
        let mut tests = vec![insn(JNE_K, R2, 0, 0, if ex.kind == 'c' { 2 } else { 1 })];
        if ex.access != 7 {
            tests.push(insn(MOV64_X, R1, R3, 0, 0));
            if st.default_allow {
                // Denied when the exception covers any of the access asked: (asked & ex) != 0.
                tests.push(insn(ALU32_AND_K, R1, 0, 0, ex.access as i32));
                tests.push(insn(JEQ_K, R1, 0, 0, 0));
            } else {
                // Allowed when it covers all of it: (asked & !ex) == 0.
                tests.push(insn(ALU32_AND_K, R1, 0, 0, (!ex.access & 7) as i32));
                tests.push(insn(JNE_K, R1, 0, 0, 0));
            }
        }
        if let Some(major) = ex.major {
            tests.push(insn(JNE_K, R4, 0, 0, major as i32));
        }
        if let Some(minor) = ex.minor {
            tests.push(insn(JNE_K, R5, 0, 0, minor as i32));
        }
        // Each test jumps over the tests after it and the two instructions of the verdict.
        let n = tests.len();
        for (i, mut t) in tests.into_iter().enumerate() {
            if t.code == JNE_K || t.code == JEQ_K {
                t.off = (n - i - 1 + 2) as i16;
            }
            p.push(t);
        }
        p.push(insn(MOV64_K, R0, 0, 0, matched));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, R0, 0, 0, i32::from(st.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

// bpf(2) commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with `attr`; the result (a descriptor for some commands).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    #[allow(unsafe_code)]
    // SAFETY: `attr` is a live, exclusively borrowed repr(C) prefix of `union bpf_attr` of the
    // size passed (the kernel zero-fills the rest and writes only within that size); pointers
    // inside it point at buffers the caller keeps alive across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

fn own(fd: i32) -> OwnedFd {
    #[allow(unsafe_code)]
    // SAFETY: `fd` was just returned by bpf(2) as a new descriptor that nothing else owns.
    unsafe {
        OwnedFd::from_raw_fd(fd)
    }
}

/// Loads the program for `rules`; the verifier's log comes back in the error when it refuses.
fn load(rules: &[DeviceRule]) -> io::Result<OwnedFd> {
    let prog = program(rules);
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..13].copy_from_slice(b"corral_device");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(own(fd)),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Load again with the verifier's log to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            match again {
                Ok(fd) => Ok(own(fd)),
                Err(_) => Err(io::Error::new(
                    e.kind(),
                    format!("the kernel refused the device filter: {e}: {text}"),
                )),
            }
        }
        Err(e) => Err(e),
    }
}

/// The ids of the device programs attached to the cgroup open as `cg`.
fn attached(cg: &File) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec())
}

/// Makes `rules` the device policy of the cgroup2 directory `dir`: attaches a new program,
/// then detaches those attached before (so that no access slips through between the two).
pub fn apply(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    let cg = File::open(dir)?;
    let old = attached(&cg)?;
    let prog = load(rules)?;
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr)?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut get) else {
            continue; // detached meanwhile
        };
        let old_prog = own(fd);
        let mut detach = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str, allow: bool) -> DeviceRule {
        DeviceRule::parse(s, allow).unwrap()
    }

    /// Runs the program on one access the way the kernel would (a tiny interpreter of the
    /// instructions `program` emits), to check the rules' meaning without root.
    fn run(p: &[Insn], kind: u32, major: u32, minor: u32, access: &str) -> u64 {
        let ctx = [(access_bits(access) << 16) | kind, major, minor];
        let mut r = [0u64; 6];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV64_K => r[dst] = i.imm as i64 as u64,
                MOV64_X => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                JEQ_K => {
                    if r[dst] == i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;

    #[test]
    fn the_last_matching_rule_decides_and_nothing_matching_is_denied() {
        let rules = crate::config::default_device_rules();
        let p = program(&rules);
        assert_eq!(run(&p, CHAR, 1, 3, "rw"), 1, "/dev/null");
        assert_eq!(run(&p, CHAR, 136, 7, "rw"), 1, "a pty");
        assert_eq!(run(&p, CHAR, 1, 1, "r"), 0, "/dev/mem");
        assert_eq!(run(&p, CHAR, 1, 1, "m"), 1, "mknod of any char device");
        assert_eq!(run(&p, BLOCK, 8, 0, "m"), 1, "mknod of any block device");
        assert_eq!(run(&p, BLOCK, 8, 0, "r"), 0, "reading a disk");
        assert_eq!(
            run(&p, BLOCK, 8, 0, "rm"),
            0,
            "asks more than the rule gives"
        );

        let mut more = rules.clone();
        more.push(rule("c 1:1 r", true));
        more.push(rule("c 1:3 w", false));
        let p = program(&more);
        assert_eq!(run(&p, CHAR, 1, 1, "r"), 1);
        assert_eq!(run(&p, CHAR, 1, 1, "w"), 0);
        assert_eq!(run(&p, CHAR, 1, 3, "r"), 1, "the deny covers writes only");
        assert_eq!(
            run(&p, CHAR, 1, 3, "w"),
            0,
            "a later deny wins over an earlier allow"
        );
        assert_eq!(run(&p, CHAR, 1, 3, "rw"), 0);
    }

    #[test]
    fn rules_play_as_in_v1() {
        // "a" resets: everything allowed, no exception left.
        let mut rules = crate::config::default_device_rules();
        rules.push(rule("a", true));
        let p = program(&rules);
        assert_eq!(p.len(), 6 + 2, "no exception to test");
        assert_eq!(run(&p, BLOCK, 8, 0, "rwm"), 1);
        // A default of allow with exceptions denied: any overlap denies.
        rules.push(rule("c 1:1 w", false));
        let p = program(&rules);
        assert_eq!(run(&p, CHAR, 1, 1, "r"), 1);
        assert_eq!(run(&p, CHAR, 1, 1, "rw"), 0);
        assert_eq!(run(&p, BLOCK, 1, 1, "w"), 1, "another type");
        // Allows on one device merge: r then w is rw.
        let p = program(&[
            rule("a", false),
            rule("c 1:1 r", true),
            rule("c 1:1 w", true),
        ]);
        assert_eq!(run(&p, CHAR, 1, 1, "rw"), 1);
        // An "a" rule with numbers covers both types.
        let p = program(&[rule("a 7:* r", true)]);
        assert_eq!(run(&p, CHAR, 7, 3, "r"), 1);
        assert_eq!(run(&p, BLOCK, 7, 3, "r"), 1);
        assert_eq!(run(&p, BLOCK, 7, 3, "w"), 0);
        // Everything denied: no rule.
        let p = program(&[]);
        assert_eq!(run(&p, CHAR, 1, 3, "r"), 0);
    }

    /// The kernel's verdict, not the interpreter's: the program attached to a cgroup2
    /// directory (the unified mount beside v1 on a hybrid host, the root on a v2 one) stops a
    /// process in it from opening a device no rule allows. Needs root and a cgroup2 mount.
    #[test]
    fn the_kernel_enforces_the_attached_program() {
        let Some(unified) = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
            })
        else {
            eprintln!("SKIPPED the_kernel_enforces_the_attached_program: no cgroup2 mount");
            return;
        };
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED the_kernel_enforces_the_attached_program: needs root");
            return;
        }
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                for _ in 0..100 {
                    if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        let dir = Dir(unified.join(format!("corral-devtest-{}", std::process::id())));
        std::fs::create_dir(&dir.0).unwrap();
        let in_cgroup = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && {script}",
                    dir.0.display()
                ))
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        let rules = crate::config::default_device_rules();
        apply(&dir.0, &rules).unwrap();
        assert!(in_cgroup("echo x > /dev/null"), "/dev/null is allowed");
        assert!(!in_cgroup("exec 3< /dev/kmsg"), "/dev/kmsg (1:11) is not");
        // Applying again replaces the program: one attached, and the new rules hold.
        let mut more = rules.clone();
        more.push(rule("c 1:11 r", true));
        apply(&dir.0, &more).unwrap();
        let cg = File::open(&dir.0).unwrap();
        assert_eq!(
            attached(&cg).unwrap().len(),
            1,
            "the old program is detached"
        );
        assert!(
            in_cgroup("exec 3< /dev/kmsg"),
            "reading /dev/kmsg is allowed now"
        );
        assert!(!in_cgroup("exec 3> /dev/kmsg"), "writing it is not");
    }
}
