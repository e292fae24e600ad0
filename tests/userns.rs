//! End-to-end tests of user namespaces (`--userns=auto`, `--uidmap`/`--gidmap`): the
//! container's root is an unprivileged range of host ids, the image's files are still root's
//! inside (idmapped layers, nothing copied), files it writes land on disk under the shifted
//! ids, a named volume keeps the container's ids on disk, and host files of host root stay out
//! of reach. Bad maps are refused before anything is made.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use corral_e2e::containers::{printed_container_id, run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::process::describe;
use corral_e2e::{path_str, skip_unless_root, unique_token, ContainerGuard, Corral};

/// Where corral's `auto` ranges start on the host (corral_container::userns::AUTO_BASE).
const AUTO_BASE: u64 = 1 << 30;

fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = Duration::from_secs(120);
    c.busybox_image();
    c
}

/// `Uid:` (real) of a host process.
fn host_uid_of(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

/// The first line of a process's uid map: (inside, outside, count).
fn uid_map_of(pid: u32) -> (u64, u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("read uid_map");
    let v: Vec<u64> = text
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().expect("number"))
        .collect();
    (v[0], v[1], v[2])
}

#[test]
fn userns_auto_maps_root_to_a_private_range_and_layers_stay_roots() {
    if skip_unless_root("userns_auto_maps_root_to_a_private_range_and_layers_stay_roots") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let secret_dir = c.path(&format!("secret-{}", unique_token()));
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("f"), "host root only\n").unwrap();
    fs::set_permissions(
        secret_dir.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let a = format!("ua-{}", unique_token());
    let b = format!("ub-{}", unique_token());
    let mut ids = Vec::new();
    for name in [&a, &b] {
        guard.track(name);
        let bind = format!("{}:/secret", path_str(&secret_dir));
        ids.push(printed_container_id(&c.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--userns=auto",
            "-v",
            &bind,
            BUSYBOX_IMAGE,
            "sleep",
            "300",
        ])));
    }
    let pid_a = c.inspect_container(&a).pid.expect("a runs");
    let pid_b = c.inspect_container(&b).pid.expect("b runs");
    let (inside, outside_a, count) = uid_map_of(pid_a);
    let (_, outside_b, _) = uid_map_of(pid_b);
    assert_eq!((inside, count), (0, 65536), "root and 65536 ids are mapped");
    assert!(
        outside_a >= AUTO_BASE && outside_b >= AUTO_BASE,
        "auto ranges come from corral's pool"
    );
    assert!(
        outside_a.abs_diff(outside_b) >= 65536,
        "two containers got overlapping ranges: {outside_a} and {outside_b}"
    );
    assert_eq!(
        host_uid_of(pid_a),
        outside_a,
        "the container's root is an unprivileged host user"
    );
    assert_ne!(
        fs::read_link(format!("/proc/{pid_a}/ns/user")).unwrap(),
        fs::read_link("/proc/self/ns/user").unwrap(),
        "the container has its own user namespace"
    );

    // Inside: root, the image's files are root's, a new file is root's.
    let out = c.ok(&[
        "exec",
        &a,
        "sh",
        "-c",
        "id -u; stat -c %u /bin/busybox; echo x > /made && stat -c %u /made",
    ]);
    assert_eq!(
        out, "0\n0\n0\n",
        "inside, root owns the image and its files"
    );
    // On the host: the image's layer is still owned by 0 (idmapped, not copied); the
    // container's own file is owned by its host range.
    let upper = c.container_dir(&ids[0]).join("upper").join("made");
    assert_eq!(
        fs::metadata(&upper)
            .expect("the file is in the upper layer")
            .uid() as u64,
        outside_a,
        "a file the container wrote belongs to its host range"
    );
    let layers_root_owned = fs::read_dir(c.images_dir().join("layers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("diff/bin/busybox"))
        .filter(|p| p.exists())
        .all(|p| fs::metadata(p).unwrap().uid() == 0);
    assert!(layers_root_owned, "the shared layer was chowned");

    // A host file that only host root may read stays closed to the container's root.
    let out = c.cmd(&["exec", &a, "cat", "/secret/f"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ermission"),
        "container root read a host-root-only file: {}",
        describe(&out)
    );
    // ... which a container without a user namespace can (the control).
    let bind = format!("{}:/secret", path_str(&secret_dir));
    assert_eq!(
        run_rm_ok(&c, &["-v", &bind], &["cat", "/secret/f"]),
        "host root only\n"
    );

    for name in [&a, &b] {
        c.ok(&["rm", "-f", name]);
    }
    c.assert_no_leaks();
}

#[test]
fn uidmap_and_named_volume_keep_container_ids_on_disk() {
    if skip_unless_root("uidmap_and_named_volume_keep_container_ids_on_disk") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let host = 1_500_000_000u64 + (std::process::id() as u64 % 1000) * 65536;
    let map = format!("0:{host}:1000");
    let vol = format!("uv{}", unique_token());
    let mount = format!("{vol}:/etc");
    // A new named volume over /etc gets the image's /etc (copied up); root writes a file and
    // opens the directory to everyone.
    let out = run_rm_ok(
        &c,
        &["--uidmap", &map, "-v", &mount],
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; stat -c %u /etc/passwd; touch /etc/by-root; chmod 1777 /etc",
        ],
    );
    let mut lines = out.lines();
    let map_line: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map_line, ["0", &host.to_string(), "1000"], "{out}");
    assert_eq!(
        lines.next(),
        Some("0"),
        "the copied-up /etc/passwd is root's"
    );
    let data = c.root().join("volumes").join(&vol);
    let on_disk = |name: &str| {
        walk(&data)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .map(|p| fs::metadata(p).unwrap().uid())
    };
    assert_eq!(
        on_disk("passwd"),
        Some(0),
        "a named volume holds the container's ids (idmapped), not the host range"
    );
    assert_eq!(on_disk("by-root"), Some(0));
    // A user inside the map writes with its own id.
    let out = run_rm_ok(
        &c,
        &["--uidmap", &map, "-u", "7:7", "-v", &mount],
        &[
            "sh",
            "-c",
            "touch /etc/by-seven && stat -c %u /etc/by-seven",
        ],
    );
    assert_eq!(out, "7\n");
    assert_eq!(on_disk("by-seven"), Some(7));
    c.ok(&["volume", "rm", &vol]);
    c.assert_no_leaks();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn bad_user_namespace_flags_fail_before_anything_is_made() {
    if skip_unless_root("bad_user_namespace_flags_fail_before_anything_is_made") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    for (flags, says) in [
        (vec!["--userns=bogus"], "expected host, auto"),
        (vec!["--userns=auto:size=0"], "expected host, auto"),
        (vec!["--uidmap", "0:100000"], "CONTAINER_ID:HOST_ID:SIZE"),
        (vec!["--uidmap", "0:100000:0"], "empty"),
        (vec!["--gidmap", "0:100000:10"], "--gidmap needs --uidmap"),
        (
            vec!["--uidmap", "0:100000:10", "-u", "500"],
            "user 500 is not mapped",
        ),
        (vec!["--userns=auto", "--uidmap", "0:100000:10"], "conflict"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(flags.iter());
        args.extend([BUSYBOX_IMAGE, "true"]);
        let err = c.fail_125(&args);
        assert!(err.contains(says), "{flags:?}: expected {says:?} in: {err}");
    }
    assert!(c.ps(true).is_empty(), "a refused run left a container");
    let out = run_rm(&c, &["--userns=host"], &["true"]);
    assert!(out.status.success(), "--userns=host: {}", describe(&out));
    c.assert_no_leaks();
}
