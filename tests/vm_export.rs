//! End-to-end tests of `corral vm export` and `vm import` (docs/cli-vms.md, "Export and
//! import"), between two worlds that stand for two hosts (two state roots). What a user
//! checks: a VM exported on one host boots on another that never had its image, with the
//! files its guest wrote; a running VM is not exported; a truncated, corrupted or hostile
//! archive fails with a clear message (exit 125) and leaves nothing behind.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_e2e::containers::{poll_until, BUSYBOX_IMAGE};
use corral_e2e::process::describe;
use corral_e2e::vms::{qemu_processes_of, VmGuard};
use corral_e2e::{path_str, report_skip, sha256_hex, skip_unless_tools, unique_token, Corral};

/// Every VM command here is bounded by this (a TCG boot takes 2–4 s; parallel tests share two
/// cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

fn has_guest_kernel() -> bool {
    std::fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64")
            })
        })
        .unwrap_or(false)
}

/// A host for VM tests (without any image), or `None` after a loud SKIPPED line.
fn host(test: &str) -> Option<Corral> {
    if skip_unless_tools(test, &["qemu-system-x86_64", "qemu-img", "mkfs.ext4"]) {
        return None;
    }
    if !has_guest_kernel() {
        report_skip(
            test,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return None;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    Some(c)
}

/// Nothing of a VM or of an import is left: no directory under `vms/` (lock files aside), no
/// imported cache entry, no QEMU of this world.
fn assert_nothing_left(c: &Corral, what: &str) {
    let vms = c.root().join("vms");
    let left: Vec<String> = std::fs::read_dir(&vms)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{what}: left in {}: {left:?}",
        vms.display()
    );
    let imported = c.root().join("vm-cache/imported");
    let cached = std::fs::read_dir(&imported)
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(cached, 0, "{what}: entries left in {}", imported.display());
    let root = path_str(c.root()).to_owned();
    assert!(
        qemu_processes_of(&root).is_empty(),
        "{what}: QEMU of this world still runs"
    );
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `vm import FILE` on `c`, expects 125 and a message containing `want`, then checks
/// nothing is left.
fn import_fails(c: &Corral, archive: &Path, want: &str, what: &str) {
    let (code, err) = c.fail(&["vm", "import", path_str(archive)]);
    assert_eq!(code, 125, "{what}: {err}");
    assert!(err.contains(want), "{what}: wanted {want:?} in: {err}");
    assert_nothing_left(c, what);
}

/// A zstd-compressed tar of `entries` (name, kind, data), names written raw in the header so
/// that hostile ones (`..`, absolute) go in as they are.
fn tar_zst(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

/// The manifest of a kernel-boot VM called `name` on `network` whose only file is `kernel`.
fn kernel_vm_manifest(name: &str, network: &str, kernel: &[u8], version: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": "corral-vm-export",
        "version": version,
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "id": "0".repeat(64),
            "name": name,
            "created": "2026-01-01T00:00:00Z",
            "cpus": 1,
            "memory_mib": 128,
            "accel": "tcg",
            "boot": {"kind": "kernel", "kernel": "/elsewhere/vmlinuz", "initrd": null, "cmdline": "console=ttyS0"},
            "networks": [{"network": network}],
        },
        "files": [{"name": "kernel", "size": kernel.len(), "sha256": sha256_hex(kernel)}],
    }))
    .unwrap()
}

#[test]
fn exported_vm_boots_on_another_host_with_its_files() {
    let Some(a) = host("exported_vm_boots_on_another_host_with_its_files") else {
        return;
    };
    let b = host("exported_vm_boots_on_another_host_with_its_files").expect("second host");
    a.busybox_image();
    let t = unique_token();
    let name = format!("x{}", &t[..8]);
    let token = format!("token-{t}");
    let mut guard_a = VmGuard::new(&a);
    guard_a.track(&name);
    let mut guard_b = VmGuard::new(&b);
    guard_b.track(&name);

    // Host A: a VM writes a file on its writable disk.
    a.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    a.ok(&[
        "vm",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        &format!("echo {token} > /root/token && sync"),
    ]);
    // A running VM is refused, with advice.
    let archive = a.path("vm.tar.zst");
    let (code, err) = a.fail(&["vm", "export", &name, "-o", path_str(&archive)]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("running") && err.contains("vm stop"),
        "export of a running VM: {err}"
    );
    assert!(!archive.exists(), "no archive from a refused export");
    a.ok(&["vm", "stop", &name]);
    let started = Instant::now();
    a.ok(&["vm", "export", &name, "-o", path_str(&archive)]);
    let export_time = started.elapsed();
    let bytes = std::fs::read(&archive).unwrap();
    let leftovers: Vec<String> = std::fs::read_dir(a.work())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files: {leftovers:?}");
    // The archive: the manifest first, then the closed set of files.
    let plain = zstd::decode_all(&bytes[..]).unwrap();
    let mut names = Vec::new();
    let mut image_disk_at = None;
    for e in tar::Archive::new(&plain[..]).entries().unwrap() {
        let e = e.unwrap();
        let n = e.path().unwrap().display().to_string();
        if n == "image.ext4" {
            image_disk_at = Some((e.raw_file_position(), e.size()));
        }
        names.push(n);
    }
    assert_eq!(
        names,
        [
            "manifest.json",
            "upper.qcow2",
            "image.ext4",
            "kernel",
            "initrd"
        ],
        "entries of the archive"
    );
    eprintln!(
        "export of a stopped busybox VM: {} bytes compressed ({} bytes of tar), {:?}",
        bytes.len(),
        plain.len(),
        export_time
    );

    // `-o -`: the same files on standard output.
    let out = a.cmd(&["vm", "export", &name, "-o", "-"]);
    assert!(out.status.success(), "export -o -: {}", describe(&out));
    let manifest_of = |archive: &[u8]| -> serde_json::Value {
        let plain = zstd::decode_all(archive).unwrap();
        let mut ar = tar::Archive::new(&plain[..]);
        let mut first = ar.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut first, &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(
        manifest_of(&out.stdout)["files"],
        manifest_of(&bytes)["files"],
        "the same files through -o -"
    );
    // A clone is a thin overlay on a base: its archive carries a standalone disk.
    let clone = format!("c{}", &t[..8]);
    guard_a.track(&clone);
    guard_b.track(&clone);
    a.ok(&["vm", "clone", &name, &clone]);
    let clone_archive = a.path("clone.tar.zst");
    a.ok(&["vm", "export", &clone, "-o", path_str(&clone_archive)]);
    let clone_bytes = std::fs::read(&clone_archive).unwrap();
    assert_eq!(
        manifest_of(&clone_bytes)["config"]["name"],
        clone.as_str(),
        "the clone's archive"
    );

    // Host B never had the image. Broken archives first: each fails and leaves nothing.
    assert!(!b.has_image(BUSYBOX_IMAGE));
    let truncated = b.path("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    import_fails(&b, &truncated, "truncated", "a truncated archive");
    let flipped = b.path("flipped.tar.zst");
    let mut f = bytes.clone();
    let mid = f.len() / 2;
    for x in &mut f[mid..mid + 16] {
        *x ^= 0xa5;
    }
    std::fs::write(&flipped, &f).unwrap();
    import_fails(&b, &flipped, "archive", "flipped compressed bytes");
    // Bytes flipped inside the image disk's entry, recompressed: the sha256 catches it.
    let (at, size) = image_disk_at.expect("image.ext4 in the archive");
    let mut p = plain.clone();
    let pos = (at + size / 3) as usize;
    for x in &mut p[pos..pos + 8] {
        *x ^= 0xff;
    }
    let corrupted = b.path("corrupted.tar.zst");
    std::fs::write(&corrupted, zstd::encode_all(&p[..], 3).unwrap()).unwrap();
    import_fails(&b, &corrupted, "image.ext4", "a corrupted disk entry");
    let (_, err) = b.fail(&["vm", "import", path_str(&corrupted)]);
    assert!(err.contains("sha256"), "{err}");

    // The archive itself, through standard input.
    let started = Instant::now();
    let out = b.cmd_with_stdin(&["vm", "import", "-"], bytes.clone());
    let import_time = started.elapsed();
    assert!(out.status.success(), "vm import -: {}", describe(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id.len(), 64, "vm import prints the new id: {id}");
    eprintln!("import: {import_time:?}");
    let ls: serde_json::Value = serde_json::from_str(&b.ok(&["vm", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["name"], name.as_str(), "{ls}");
    assert_eq!(ls[0]["id"], id.as_str(), "{ls}");
    assert_eq!(ls[0]["status"], "created", "{ls}");
    let cache = b.root().join("vm-cache/imported");
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        3,
        "kernel, initrd, image disk"
    );
    assert!(!b.has_image(BUSYBOX_IMAGE), "B still has no image");

    // The same archive again: the name is taken, the cache is shared.
    let out = b.cmd_with_stdin(&["vm", "import", "-"], bytes.clone());
    assert!(out.status.success(), "second import: {}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("taken"),
        "{}",
        describe(&out)
    );
    let second = stdout(&out).trim().to_owned();
    assert_ne!(second, id);
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        3,
        "deduplicated"
    );
    b.ok(&["vm", "rm", &second]);

    // B boots it: the guest sees the file written on A.
    b.ok(&["vm", "start", &name]);
    let mut seen = String::new();
    assert!(
        poll_until(Duration::from_secs(30), || {
            seen = b.ok(&["vm", "exec", &name, "--", "cat", "/root/token"]);
            seen.trim() == token
        }),
        "the imported VM's disk has the token: {seen:?}"
    );
    b.ok(&["vm", "rm", "-f", &name]);
    // The clone, imported, boots alone with the file its source had.
    b.ok(&["vm", "import", path_str(&clone_archive)]);
    let upper = b.root().join("vms");
    let info: serde_json::Value = serde_json::from_str(&b.ok(&["vm", "inspect", &clone])).unwrap();
    let upper_disk = info[0]["config"]["upper_disk"].as_str().unwrap().to_owned();
    assert!(upper_disk.starts_with(path_str(&upper)), "{upper_disk}");
    let qinfo = corral_e2e::containers::host_output(
        "qemu-img",
        &["info", "--output=json", "-U", &upper_disk],
    );
    assert!(
        !qinfo.contains("backing-filename"),
        "a standalone disk: {qinfo}"
    );
    b.ok(&["vm", "start", &clone]);
    let mut seen = String::new();
    assert!(
        poll_until(Duration::from_secs(30), || {
            seen = b.ok(&["vm", "exec", &clone, "--", "cat", "/root/token"]);
            seen.trim() == token
        }),
        "the imported clone's disk has the token: {seen:?}"
    );
    b.ok(&["vm", "rm", "-f", &clone]);
    a.ok(&["vm", "rm", "-f", &clone]);
    a.ok(&["vm", "rm", "-f", &name]);
    // The imported cache entries stay (shared by content); B's VMs are gone.
    std::fs::remove_dir_all(&cache).unwrap();
    assert_nothing_left(&a, "host A at the end");
    assert_nothing_left(&b, "host B at the end");
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let Some(c) = host("hostile_archives_are_refused_and_leave_nothing") else {
        return;
    };
    let t = unique_token();
    let name = format!("h{}", &t[..8]);
    let kernel = format!("not really a kernel {t}").into_bytes();
    let manifest = kernel_vm_manifest(&name, "corral", &kernel, 1);
    let regular = tar::EntryType::Regular;
    let write = |file: &str, bytes: Vec<u8>| {
        let p = c.path(file);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an entry with ../",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("../../escape", regular, &kernel),
            ]),
            "outside",
        ),
        (
            "an absolute entry",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("/tmp/escape", regular, &kernel),
            ]),
            "outside",
        ),
        (
            "a symbolic link",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("kernel", tar::EntryType::Symlink, b""),
            ]),
            "symbolic link",
        ),
        (
            "a hard link",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("kernel", tar::EntryType::Link, b""),
            ]),
            "hard link",
        ),
        (
            "a device",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("kernel", tar::EntryType::Block, b""),
            ]),
            "device",
        ),
        (
            "an unknown entry",
            tar_zst(&[
                ("manifest.json", regular, &manifest),
                ("kernel", regular, &kernel),
                ("extra", regular, b"x"),
            ]),
            "unknown entry",
        ),
        (
            "a missing entry",
            tar_zst(&[("manifest.json", regular, &manifest)]),
            "missing",
        ),
        (
            "a manifest of a newer version",
            tar_zst(&[
                (
                    "manifest.json",
                    regular,
                    &kernel_vm_manifest(&name, "corral", &kernel, 99),
                ),
                ("kernel", regular, &kernel),
            ]),
            "version",
        ),
        (
            "no manifest first",
            tar_zst(&[("kernel", regular, &kernel)]),
            "manifest.json",
        ),
        (
            "not zstd",
            b"plain text, not an archive".to_vec(),
            "reading the archive",
        ),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        let p = write(&format!("hostile-{i}.tar.zst"), bytes);
        import_fails(&c, &p, want, what);
    }
    assert!(!c.root().join("escape").exists() && !c.base().join("escape").exists());

    // Networks named in the config must exist here, or be replaced.
    let net = format!("nonet{}", &t[..6]);
    let archive = write(
        "kernel-vm.tar.zst",
        tar_zst(&[
            (
                "manifest.json",
                regular,
                &kernel_vm_manifest(&name, &net, &kernel, 1),
            ),
            ("kernel", regular, &kernel),
        ]),
    );
    import_fails(&c, &archive, &net, "a missing network");
    let (_, err) = c.fail(&["vm", "import", path_str(&archive)]);
    assert!(err.contains("--network"), "{err}");
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    let id = c.ok(&["vm", "import", "--network", "none", path_str(&archive)]);
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", &name])).unwrap();
    assert_eq!(info[0]["id"], id.trim(), "{info}");
    assert_eq!(
        info[0]["config"]["networks"],
        serde_json::json!([]),
        "{info}"
    );
    let placed = info[0]["config"]["boot"]["kernel"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        placed,
        path_str(
            &c.root()
                .join("vm-cache/imported")
                .join(sha256_hex(&kernel))
                .join("kernel")
        ),
        "the kernel lands in the imported cache by its sha256"
    );
    assert_eq!(std::fs::read(&placed).unwrap(), kernel);
    c.ok(&["vm", "rm", &name]);
    std::fs::remove_dir_all(c.root().join("vm-cache/imported")).unwrap();
    assert_nothing_left(&c, "the end");
}

#[test]
fn a_running_vm_exported_with_its_memory_resumes_on_another_host() {
    let test = "a_running_vm_exported_with_its_memory_resumes_on_another_host";
    let Some(a) = host(test) else { return };
    let Some(b) = host(test) else { return };
    a.busybox_image();
    let name = format!("m{}", &unique_token()[..6]);
    let mut guard_a = VmGuard::new(&a);
    let mut guard_b = VmGuard::new(&b);
    guard_a.track(&name);
    guard_b.track(&name);
    // A process that counts in its memory; a file it wrote before the export.
    a.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        "echo kept > /kept; i=0; while true; do i=$((i+1)); echo $i > /counter; sleep 0.1; done",
    ]);
    let count = |c: &Corral| -> u64 {
        stdout(&c.cmd(&["vm", "exec", &name, "--", "cat", "/counter"]))
            .trim()
            .parse()
            .unwrap_or(0)
    };
    assert!(poll_until(Duration::from_secs(30), || count(&a) >= 5));
    let archive = a.path("running.vmx");
    let out = a.cmd(&[
        "vm",
        "export",
        "--memory",
        "-q",
        "-o",
        path_str(&archive),
        &name,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let at_export = count(&a);
    assert_eq!(
        at_export, 0,
        "the VM is stopped after an export with --memory"
    );
    let c0: u64 = {
        let ls: serde_json::Value =
            serde_json::from_str(&a.ok(&["vm", "snapshot", "ls", "--json", &name])).unwrap();
        assert_eq!(ls[0]["memory"], true, "{ls}");
        ls.as_array().unwrap().len() as u64
    };
    assert_eq!(c0, 1);
    // On B: the snapshot came along inside the disk; restoring it resumes the counter.
    b.ok(&["vm", "import", "-q", path_str(&archive)]);
    let ls: serde_json::Value =
        serde_json::from_str(&b.ok(&["vm", "snapshot", "ls", "--json", &name])).unwrap();
    let tag = ls[0]["name"].as_str().expect("a snapshot on B").to_owned();
    assert!(tag.starts_with("export-"), "{ls}");
    b.ok(&["vm", "snapshot", "restore", &name, &tag]);
    // The first exec after a restore can come before the agent has answered again: read the
    // counter once an exec succeeds (a failed exec is not a counter of 0).
    let read = |c: &Corral| -> Option<u64> {
        let out = c.cmd(&["vm", "exec", &name, "--", "cat", "/counter"]);
        out.status
            .success()
            .then(|| stdout(&out).trim().parse().ok())
            .flatten()
    };
    let mut first = None;
    assert!(
        poll_until(Duration::from_secs(20), || {
            first = read(&b);
            first.is_some()
        }),
        "no exec succeeded in the restored VM"
    );
    let first = first.unwrap_or(0);
    assert!(
        first >= 5,
        "the counter resumes from where it was, not from 0: {first}"
    );
    assert!(
        poll_until(Duration::from_secs(30), || count(&b) > first + 3),
        "it keeps counting on B"
    );
    assert_eq!(
        stdout(&b.cmd(&["vm", "exec", &name, "--", "cat", "/kept"])).trim(),
        "kept"
    );
    b.ok(&["vm", "rm", "-f", &name]);
    a.ok(&["vm", "rm", "-f", &name]);
    assert_nothing_left(&a, "host A");
    // B keeps the imported kernel, initramfs and image disk in its cache, by design.
    assert_eq!(b.ok(&["vm", "ls", "-q"]), "");
    assert!(qemu_processes_of(path_str(b.root())).is_empty());
}

#[test]
fn an_import_under_another_name_is_another_machine() {
    let Some(c) = host("an_import_under_another_name_is_another_machine") else {
        return;
    };
    c.busybox_image();
    let t = unique_token();
    let mut nets = corral_e2e::networks::NetworkGuard::new(&c);
    let net = format!("ie{}", &t[t.len() - 6..]);
    nets.create(&net, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let name = format!("orig{}", &t[..5]);
    let copy = format!("copy{}", &t[..5]);
    guard.track(&name);
    guard.track(&copy);
    let port = corral_e2e::networks::free_tcp_port().to_string();
    c.ok(&[
        "vm",
        "create",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--network",
        &net,
        "--network-alias",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "--ip",
        &format!("{}.9", net_prefix(&c, &net)),
        "--",
        "sleep",
        "1000",
    ]);
    let archive = c.path("orig.tar");
    c.ok(&["vm", "export", &name, "-o", path_str(&archive)]);
    c.ok(&["vm", "import", "--name", &copy, path_str(&archive)]);
    let networks = |vm: &str| -> serde_json::Value {
        let info: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", vm])).unwrap();
        info[0]["config"]["networks"].clone()
    };
    let orig = networks(&name).to_string();
    assert!(orig.contains(&port) && orig.contains("web"), "{orig}");
    let n = networks(&copy);
    assert_eq!(
        n[0]["network"],
        net.as_str(),
        "the copy keeps the network: {n}"
    );
    assert_eq!(
        n[0]["ports"],
        serde_json::json!([]),
        "no published ports: {n}"
    );
    assert_eq!(n[0]["aliases"], serde_json::json!([]), "no aliases: {n}");
    assert!(n[0]["ip"].is_null(), "no fixed address: {n}");
    for vm in [&name, &copy] {
        c.ok(&["vm", "rm", "-f", vm]);
    }
}

/// The first three octets of a corral network's subnet.
fn net_prefix(c: &Corral, net: &str) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(&["network", "inspect", net])).expect("network inspect");
    let subnet = info[0]["Subnet"]
        .as_str()
        .or_else(|| info[0]["subnet"].as_str())
        .or_else(|| info["subnet"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no subnet in {info}"));
    subnet.rsplit_once('.').expect("dotted").0.to_owned()
}
