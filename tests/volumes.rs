//! End-to-end tests of named volumes (`-v NAME:/path`, `corral volume ...`) and of the
//! privilege flags of `run` (`--cap-add`, `--cap-drop`, `--privileged`, `--ulimit`), against
//! the contract in docs/cli-containers.md.
//!
//! Every test runs the real binary as root in its own world with the busybox image, a
//! [`VolumeGuard`] that removes the volumes it names and a [`ContainerGuard`] that removes its
//! containers (declared after the volume guard, so containers go first and the volumes they
//! used are free to go).

use std::thread;
use std::time::Duration;

use serde_json::Value;

use corral_e2e::containers::{run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::process::describe;
use corral_e2e::{skip_unless_root, unique_token, ContainerGuard, Corral};

/// corral's own failures.
const EXIT_CORRAL: i32 = 125;
/// podman's default capabilities as a mask (see tests/container.rs).
const PODMAN_DEFAULT_CAPS: u64 = 0x8004_05fb;
/// CAP_SYS_ADMIN.
const CAP_SYS_ADMIN_BIT: u64 = 1 << 21;

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = Duration::from_secs(120);
    c.busybox_image();
    c
}

/// A name unique to this run.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", unique_token())
}

/// Removes the volumes it tracks (`volume rm -f`) when dropped; never panics.
struct VolumeGuard<'a> {
    corral: &'a Corral,
    names: Vec<String>,
}

impl<'a> VolumeGuard<'a> {
    fn new(corral: &'a Corral) -> Self {
        VolumeGuard {
            corral,
            names: Vec::new(),
        }
    }

    /// Tracks `name` and returns it.
    fn track(&mut self, name: String) -> String {
        self.names.push(name.clone());
        name
    }
}

impl Drop for VolumeGuard<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let out = self.corral.cmd(&["volume", "rm", "-f", n]);
            if !out.status.success() {
                eprintln!("warning: volume rm -f {n}: {}", describe(&out));
            }
        }
    }
}

/// `volume ls --json`, parsed.
fn volume_list(c: &Corral) -> Vec<Value> {
    let text = c.ok(&["volume", "ls", "--json"]);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("volume ls --json printed invalid JSON ({e}):\n{text}"));
    v.as_array()
        .unwrap_or_else(|| panic!("volume ls --json is not an array:\n{text}"))
        .clone()
}

fn volume_names(c: &Corral) -> Vec<String> {
    volume_list(c)
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// The CapEff mask a container prints for `grep CapEff /proc/self/status`.
fn cap_eff(c: &Corral, flags: &[&str]) -> u64 {
    let out = run_rm_ok(c, flags, &["grep", "CapEff", "/proc/self/status"]);
    let hex = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no CapEff in {out:?}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("CapEff {hex:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// named volumes

#[test]
fn named_volume_keeps_data_across_containers() {
    if skip_unless_root("named_volume_keeps_data_across_containers") {
        return;
    }
    let c = world();
    let mut vols = VolumeGuard::new(&c);
    let _containers = ContainerGuard::new(&c);
    let vol = vols.track(unique("keep"));
    let bind = format!("{vol}:/data");

    run_rm_ok(&c, &["-v", &bind], &["sh", "-c", "echo kept > /data/note"]);
    let out = run_rm_ok(&c, &["-v", &bind], &["cat", "/data/note"]);
    assert_eq!(out.trim(), "kept");

    let listed = volume_list(&c);
    let entry = listed
        .iter()
        .find(|v| v["name"] == vol.as_str())
        .unwrap_or_else(|| panic!("volume ls --json does not list {vol}: {listed:?}"));
    let mountpoint = entry["mountpoint"].as_str().expect("mountpoint");
    assert_eq!(
        std::fs::read_to_string(format!("{mountpoint}/note")).expect("note on the host"),
        "kept\n"
    );
    assert!(entry["created"].as_str().is_some_and(|s| !s.is_empty()));
    let q = c.ok(&["volume", "ls", "-q"]);
    assert!(q.lines().any(|l| l == vol), "volume ls -q: {q}");

    let inspected: Value =
        serde_json::from_str(c.ok(&["volume", "inspect", &vol]).trim()).expect("inspect JSON");
    assert_eq!(inspected["name"], vol.as_str());
    assert_eq!(inspected["mountpoint"], mountpoint);
    assert!(c.fail(&["volume", "inspect", "no-such-volume"]).0 == EXIT_CORRAL);
}

#[test]
fn fresh_volume_gets_image_content_once() {
    if skip_unless_root("fresh_volume_gets_image_content_once") {
        return;
    }
    let c = world();
    let mut vols = VolumeGuard::new(&c);
    let _containers = ContainerGuard::new(&c);
    let vol = vols.track(unique("copyup"));
    let bind = format!("{vol}:/etc");

    // The image's /etc shows through the fresh volume; the container then empties it.
    let out = run_rm_ok(
        &c,
        &["-v", &bind],
        &["sh", "-c", "cat /etc/passwd && rm /etc/passwd /etc/group"],
    );
    assert!(
        out.starts_with("root:x:0:0:"),
        "copied-up /etc/passwd: {out:?}"
    );
    // Copied once only: the next container sees the volume as the last one left it.
    let out = run_rm_ok(&c, &["-v", &bind], &["ls", "-A", "/etc"]);
    assert_eq!(out.trim(), "", "the volume was filled again: {out:?}");
}

#[test]
fn racing_runs_share_one_new_volume() {
    if skip_unless_root("racing_runs_share_one_new_volume") {
        return;
    }
    let c = world();
    let mut vols = VolumeGuard::new(&c);
    let _containers = ContainerGuard::new(&c);
    let vol = vols.track(unique("race"));
    let bind = format!("{vol}:/data");
    let outs: Vec<_> = thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (c, bind) = (&c, &bind);
                s.spawn(move || run_rm(c, &["-v", bind], &["touch", &format!("/data/{i}")]))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for o in &outs {
        assert!(o.status.success(), "racing run: {}", describe(o));
    }
    let out = run_rm_ok(&c, &["-v", &bind], &["ls", "/data"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    assert_eq!(volume_names(&c), [vol]);
}

#[test]
fn volume_rm_refuses_volume_of_existing_container() {
    if skip_unless_root("volume_rm_refuses_volume_of_existing_container") {
        return;
    }
    let c = world();
    let mut vols = VolumeGuard::new(&c);
    let mut containers = ContainerGuard::new(&c);
    let vol = vols.track(unique("used"));
    let name = unique("user");
    containers.track(&name);
    // Exits at once and stays (no --rm): stopped, not removed.
    c.ok(&[
        "run",
        "--name",
        &name,
        "-v",
        &format!("{vol}:/data"),
        BUSYBOX_IMAGE,
        "true",
    ]);

    for args in [&["volume", "rm", &vol][..], &["volume", "rm", "-f", &vol]] {
        let (code, stderr) = c.fail(args);
        assert_eq!(code, EXIT_CORRAL, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&name),
            "{args:?} does not name {name}: {stderr}"
        );
    }
    assert!(volume_names(&c).contains(&vol));

    c.ok(&["rm", &name]);
    let out = c.ok(&["volume", "rm", &vol]);
    assert_eq!(out.trim(), vol);
    assert!(!volume_names(&c).contains(&vol));
    // Gone: rm fails, rm -f does not.
    assert_eq!(c.fail(&["volume", "rm", &vol]).0, EXIT_CORRAL);
    c.ok(&["volume", "rm", "-f", &vol]);
}

#[test]
fn volume_prune_removes_only_unused() {
    if skip_unless_root("volume_prune_removes_only_unused") {
        return;
    }
    let c = world();
    let mut vols = VolumeGuard::new(&c);
    let mut containers = ContainerGuard::new(&c);
    let used = vols.track(unique("used"));
    let idle = vols.track(unique("idle"));
    let filled = vols.track(unique("filled"));
    c.ok(&["volume", "create", &idle]);
    run_rm_ok(
        &c,
        &["-v", &format!("{filled}:/d")],
        &["dd", "if=/dev/zero", "of=/d/blob", "bs=1024", "count=64"],
    );
    let name = unique("keeper");
    containers.track(&name);
    c.ok(&[
        "create",
        "--name",
        &name,
        "-v",
        &format!("{used}:/data"),
        BUSYBOX_IMAGE,
        "true",
    ]);

    let out = c.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(&idle) && out.contains(&filled), "prune: {out}");
    assert!(!out.contains(&used), "prune removed a used volume: {out}");
    assert!(out.contains("Total reclaimed space:"), "prune: {out}");
    assert_eq!(volume_names(&c), [used]);
}

#[test]
fn invalid_volume_name_is_refused() {
    if skip_unless_root("invalid_volume_name_is_refused") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    let (code, stderr) = c.fail(&["run", "--rm", "-v", "-bad:/d", BUSYBOX_IMAGE, "true"]);
    assert_eq!(code, EXIT_CORRAL, "{stderr}");
    assert_eq!(c.fail(&["volume", "create", "a/b"]).0, EXIT_CORRAL);
    assert!(volume_names(&c).is_empty());
}

// ---------------------------------------------------------------------------------------------
// capabilities, --privileged, --ulimit

#[test]
fn cap_drop_chown_forbids_chown() {
    if skip_unless_root("cap_drop_chown_forbids_chown") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    let script = ["sh", "-c", "touch /tmp/f && busybox chown 1:1 /tmp/f"];
    run_rm_ok(&c, &[], &script);
    for drop in ["CHOWN", "cap_chown"] {
        let out = run_rm(&c, &["--cap-drop", drop], &script);
        assert!(
            !out.status.success() && out.status.code() != Some(EXIT_CORRAL),
            "chown with --cap-drop {drop} should fail in the container: {}",
            describe(&out)
        );
    }
    assert_eq!(
        cap_eff(&c, &["--cap-drop", "CHOWN"]),
        PODMAN_DEFAULT_CAPS & !1
    );
    assert_eq!(
        c.fail(&["run", "--rm", "--cap-drop", "NOPE", BUSYBOX_IMAGE, "true"])
            .0,
        EXIT_CORRAL
    );
}

#[test]
fn cap_add_sys_admin_shows_in_capeff() {
    if skip_unless_root("cap_add_sys_admin_shows_in_capeff") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    assert_eq!(cap_eff(&c, &[]), PODMAN_DEFAULT_CAPS);
    assert_eq!(
        cap_eff(&c, &["--cap-add", "SYS_ADMIN"]),
        PODMAN_DEFAULT_CAPS | CAP_SYS_ADMIN_BIT
    );
    assert_eq!(
        cap_eff(&c, &["--cap-drop", "ALL", "--cap-add", "sys_admin"]),
        CAP_SYS_ADMIN_BIT
    );
}

#[test]
fn privileged_allows_mount_and_unmasks() {
    if skip_unless_root("privileged_allows_mount_and_unmasks") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    let script = ["sh", "-c", "mkdir -p /mnt && mount -t tmpfs none /mnt"];
    let out = run_rm(&c, &[], &script);
    assert!(
        !out.status.success(),
        "mount without --privileged: {}",
        describe(&out)
    );
    run_rm_ok(&c, &["--privileged"], &script);

    // /sys read-write, /proc/sys writable (not read-only), nothing masked.
    let mounts = run_rm_ok(&c, &["--privileged"], &["cat", "/proc/mounts"]);
    let sys = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/sys"))
        .unwrap_or_else(|| panic!("no /sys in {mounts}"));
    assert!(sys.contains(" rw,"), "/sys with --privileged: {sys}");
    assert!(
        !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/proc/sys")),
        "/proc/sys is still a read-only mount: {mounts}"
    );
    assert!(
        !mounts.contains(" /proc/keys "),
        "/proc/keys still masked: {mounts}"
    );
    let default = run_rm_ok(&c, &[], &["cat", "/proc/mounts"]);
    assert!(default.contains(" /proc/keys "), "default masks: {default}");
}

#[test]
fn ulimit_takes_every_kind_of_limit() {
    if skip_unless_root("ulimit_takes_every_kind_of_limit") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    // Address space in KiB and file size in 512-byte blocks, as the shell prints them.
    let out = run_rm_ok(
        &c,
        &[
            "--ulimit",
            "as=1073741824",
            "--ulimit",
            "fsize=1048576:2097152",
            "--ulimit",
            "cpu=100",
        ],
        &["sh", "-c", "ulimit -v; ulimit -f; ulimit -Hf; ulimit -t"],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1048576", "2048", "4096", "100"]
    );
    let err = c.fail_125(&["run", "--rm", "--ulimit", "bogus=1", BUSYBOX_IMAGE, "true"]);
    assert!(err.contains("bogus"), "an unknown --ulimit: {err}");
}

#[test]
fn ulimit_nofile_sets_soft_and_hard() {
    if skip_unless_root("ulimit_nofile_sets_soft_and_hard") {
        return;
    }
    let c = world();
    let _containers = ContainerGuard::new(&c);
    let out = run_rm_ok(
        &c,
        &["--ulimit", "nofile=1024:2048"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1024", "2048"]);
    let out = run_rm_ok(
        &c,
        &["--ulimit", "nofile=512"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["512", "512"]);
    assert_eq!(
        c.fail(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=9:8",
            BUSYBOX_IMAGE,
            "true"
        ])
        .0,
        EXIT_CORRAL
    );
}

/// `volume create -o`: docker's local driver options mount a filesystem on the volume. A
/// tmpfs volume has the size asked for and keeps its content between containers (corral keeps
/// it mounted until `volume rm`, see docs/cli-containers.md); a bind volume shows a host
/// directory, and removing the volume leaves that directory's files alone; a volume whose
/// mount went away (a reboot) is mounted again when a container starts.
#[test]
fn volume_driver_options_mount_tmpfs_and_binds_and_removal_spares_the_host() {
    if skip_unless_root("volume_driver_options_mount_tmpfs_and_binds_and_removal_spares_the_host") {
        return;
    }
    let c = world();
    let mut vols = corral_e2e::engine::VolumeGuard::new(&c);
    let tv = unique("tmpfsvol");
    vols.track(&tv);
    c.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=5m,mode=0700",
        &tv,
    ]);
    let mountpoint = c.root().join("volumes").join(&tv).join("_data");
    let df = run_rm_ok(
        &c,
        &["--network", "none", "-v", &format!("{tv}:/d")],
        &[
            "sh",
            "-c",
            "df -k /d | tail -1; stat -c %a /d; echo kept > /d/f",
        ],
    );
    let words: Vec<&str> = df.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"5120"), "size=5m: a 5 MiB tmpfs: {df}");
    assert_eq!(
        words.last(),
        Some(&"700"),
        "mode=0700 reached the filesystem: {df}"
    );
    assert_eq!(
        run_rm_ok(
            &c,
            &["--network", "none", "-v", &format!("{tv}:/d")],
            &["cat", "/d/f"]
        ),
        "kept\n",
        "the next container sees what the last one wrote"
    );
    let shown = c.ok(&["volume", "inspect", "-f", "{{json .Options}}", &tv]);
    assert_eq!(
        shown.trim(),
        r#"{"device":"tmpfs","o":"size=5m,mode=0700","type":"tmpfs"}"#
    );
    // A reboot takes the mount away: the next start mounts it again.
    let out = std::process::Command::new("umount")
        .arg("-l")
        .arg(&mountpoint)
        .output()
        .expect("run umount");
    assert!(out.status.success(), "umount -l: {}", describe(&out));
    let again = run_rm_ok(
        &c,
        &["--network", "none", "-v", &format!("{tv}:/d")],
        &["sh", "-c", "df -k /d | tail -1"],
    );
    assert!(
        again.split_whitespace().nth(1) == Some("5120"),
        "mounted again at start: {again}"
    );
    c.ok(&["volume", "rm", &tv]);
    assert!(
        corral_e2e::mounts::mounts_under(&mountpoint).is_empty(),
        "volume rm takes the mount off"
    );

    // A bind volume: the host directory's files are the volume's; removal spares them.
    let host = corral_e2e::test_tempdir("bindvol");
    std::fs::write(host.path().join("h"), "host file\n").unwrap();
    let bv = unique("bindvol");
    vols.track(&bv);
    c.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        &format!("device={}", host.path().display()),
        "-o",
        "o=bind",
        &bv,
    ]);
    assert_eq!(
        run_rm_ok(
            &c,
            &["--network", "none", "-v", &format!("{bv}:/d")],
            &["cat", "/d/h"]
        ),
        "host file\n"
    );
    c.ok(&["volume", "rm", &bv]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("h"))
            .ok()
            .as_deref(),
        Some("host file\n"),
        "removing a bind volume never deletes the host directory's files"
    );

    // Bad options: 125 naming the problem, no volume and no mount left.
    let dir = host.path().display().to_string();
    for (opts, why) in [
        (vec!["-o", "size=1m"], "size"),
        (vec!["-o", "device=tmpfs"], "type is missing"),
        (
            vec!["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=bogus=1"],
            "mounting tmpfs",
        ),
        (
            vec![
                "-o",
                "type=none",
                "-o",
                "device=/no/such/dir",
                "-o",
                "o=bind",
            ],
            "no such directory",
        ),
        (vec!["-o", "type=none", "-o", "o=bind"], "absolute"),
        (vec!["-o", &format!("type=none,device={dir}")], "type=none"),
    ] {
        let name = unique("badvol");
        let mut args = vec!["volume", "create"];
        args.extend_from_slice(&opts);
        args.push(&name);
        let out = c.cmd(&args);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "{opts:?}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{opts:?}: the message names {why:?}: {}",
            describe(&out)
        );
        assert!(
            !c.ok(&["volume", "ls", "-q"]).lines().any(|l| l == name),
            "{opts:?}: no volume {name} left"
        );
    }
    assert!(
        corral_e2e::mounts::mounts_under(&c.root().join("volumes")).is_empty(),
        "no mount left under the volumes"
    );
}
