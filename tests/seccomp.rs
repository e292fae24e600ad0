//! End-to-end tests of the seccomp filter: the default profile (ordinary work runs, mounts
//! and namespaces fail even with the capability that would allow them), `seccomp=unconfined`,
//! a profile file in docker's format, and a malformed profile refused before anything starts.
//!
//! The kernel tells whether a filter is on: `Seccomp:` in `/proc/self/status` is 2 in filter
//! mode, 0 without one. Every test runs the real binary as root in its own world with the
//! busybox image; `--rm` containers leave nothing for a guard to clean.

use std::time::Duration;

use corral_e2e::containers::{run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::process::describe;
use corral_e2e::{path_str, report_skip, skip_unless_root, Corral};

/// Deadline of one corral command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// The `Seccomp:` mode the container's process reports.
fn seccomp_mode(c: &Corral, flags: &[&str]) -> String {
    let out = run_rm_ok(c, flags, &["grep", "^Seccomp:", "/proc/self/status"]);
    out.split_whitespace().nth(1).unwrap_or_default().to_owned()
}

#[test]
fn default_container_runs_under_a_filter() {
    if skip_unless_root("default_container_runs_under_a_filter") {
        return;
    }
    let c = world();
    assert_eq!(seccomp_mode(&c, &[]), "2");
    // Both install paths: before the capability drop (no no_new_privs), and last, after
    // no_new_privs; and a non-root user, who has no CAP_SYS_ADMIN once the init drops it.
    assert_eq!(
        seccomp_mode(&c, &["--security-opt", "no-new-privileges"]),
        "2"
    );
    assert_eq!(seccomp_mode(&c, &["--user", "1000:1000"]), "2");
}

#[test]
fn unconfined_runs_without_a_filter() {
    if skip_unless_root("unconfined_runs_without_a_filter") {
        return;
    }
    let c = world();
    assert_eq!(
        seccomp_mode(&c, &["--security-opt", "seccomp=unconfined"]),
        "0"
    );
}

#[test]
fn ordinary_workload_runs_under_the_default_filter() {
    if skip_unless_root("ordinary_workload_runs_under_the_default_filter") {
        return;
    }
    let c = world();
    let script = "ls / && cat /etc/passwd && sleep 0.1 && echo ok";
    let out = run_rm_ok(&c, &[], &["sh", "-c", script]);
    assert!(out.trim_end().ends_with("ok"), "{out}");
    // Pipes, fork, wait, files, time, as a user and with no_new_privs.
    let script = "echo a b c | wc -w > /tmp/n && cat /tmp/n && date +%Y >/dev/null && id -u";
    let out = run_rm_ok(
        &c,
        &["--user", "1000:1000", "--security-opt", "no-new-privileges"],
        &["sh", "-c", script],
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["3", "1000"]);
}

#[test]
fn mount_fails_even_with_cap_sys_admin() {
    if skip_unless_root("mount_fails_even_with_cap_sys_admin") {
        return;
    }
    let c = world();
    let script = "mkdir -p /tmp/x && mount -t tmpfs none /tmp/x && echo mounted";
    // Default: no CAP_SYS_ADMIN and the filter.
    let out = run_rm(&c, &[], &["sh", "-c", script]);
    assert!(!out.status.success(), "mount worked: {}", describe(&out));
    // With the capability, the filter alone stops it ...
    let out = run_rm(&c, &["--cap-add", "SYS_ADMIN"], &["sh", "-c", script]);
    assert!(!out.status.success(), "mount worked: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("mounted"), "{}", describe(&out));
    // ... as the control shows: without the filter the same mount works.
    let out = run_rm_ok(
        &c,
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ],
        &["sh", "-c", script],
    );
    assert!(out.contains("mounted"), "{out}");
}

#[test]
fn unshare_fails_under_the_default_filter() {
    if skip_unless_root("unshare_fails_under_the_default_filter") {
        return;
    }
    let c = world();
    let list = run_rm_ok(&c, &[], &["busybox", "--list"]);
    if !list.lines().any(|l| l.trim() == "unshare") {
        report_skip(
            "unshare_fails_under_the_default_filter",
            "the busybox image has no unshare applet",
        );
        return;
    }
    for flags in [&[][..], &["--cap-add", "SYS_ADMIN"][..]] {
        let out = run_rm(
            &c,
            flags,
            &["sh", "-c", "unshare -m -u true && echo entered"],
        );
        assert!(
            !out.status.success(),
            "unshare worked with {flags:?}: {}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Operation not permitted"),
            "{flags:?}: {}",
            describe(&out)
        );
    }
    // The control: with the capability and no filter it works.
    let out = run_rm_ok(
        &c,
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ],
        &["sh", "-c", "unshare -m -u true && echo entered"],
    );
    assert!(out.contains("entered"), "{out}");
}

#[test]
fn profile_file_denies_mkdir_and_allows_the_rest() {
    if skip_unless_root("profile_file_denies_mkdir_and_allows_the_rest") {
        return;
    }
    let c = world();
    let profile = c.path("no-mkdir.json");
    // glibc's mkdir() may use either call; deny both.
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"}
            ]
        }"#,
    )
    .expect("write the profile");
    let opt = format!("seccomp={}", path_str(&profile));
    let out = run_rm(&c, &["--security-opt", &opt], &["mkdir", "/tmp/x"]);
    assert!(!out.status.success(), "mkdir worked: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Operation not permitted"),
        "{}",
        describe(&out)
    );
    let out = run_rm_ok(
        &c,
        &["--security-opt", &opt],
        &[
            "sh",
            "-c",
            "ls / >/dev/null && touch /tmp/f && grep ^Seccomp: /proc/self/status",
        ],
    );
    assert_eq!(out.split_whitespace().nth(1), Some("2"), "{out}");
}

#[test]
fn malformed_profile_fails_run_and_create_with_125() {
    if skip_unless_root("malformed_profile_fails_run_and_create_with_125") {
        return;
    }
    let c = world();
    let bad = c.path("bad-profile.json");
    std::fs::write(
        &bad,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}"#,
    )
    .expect("write the profile");
    let opt = format!("seccomp={}", path_str(&bad));
    for verb in ["run", "create"] {
        let stderr = c.fail_125(&[verb, "--security-opt", &opt, BUSYBOX_IMAGE, "true"]);
        assert!(stderr.contains(path_str(&bad)), "{verb}: {stderr}");
        assert!(stderr.contains("SCMP_ACT_BOGUS"), "{verb}: {stderr}");
    }
    let missing = c.path("missing-profile.json");
    let opt = format!("seccomp={}", path_str(&missing));
    let stderr = c.fail_125(&["run", "--rm", "--security-opt", &opt, BUSYBOX_IMAGE, "true"]);
    assert!(stderr.contains(path_str(&missing)), "{stderr}");
    // Nothing was created.
    assert!(c.ps(true).is_empty(), "{:?}", c.ps(true));
}
