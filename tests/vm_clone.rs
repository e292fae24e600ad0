//! End-to-end tests of VM templates and clones (docs/cli-vms.md, "Templates and clones"), with
//! real guests (Debian's cloud kernel under QEMU, corral's agent, the busybox image). What a
//! user checks: a stopped VM turns into a template; clones of it boot side by side on one
//! network, each with its own hostname, address, MAC and machine id, each seeing the
//! template's files; a write in one clone is seen by no other, nor by the template (whose disk
//! stays byte for byte the same); a stopped VM can be cloned and both go on; a template in use
//! cannot be removed; and nothing is left at the end — no VM, no template or base disk, no QEMU.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use corral_e2e::networks::NetworkGuard;
use corral_e2e::process::describe;
use corral_e2e::vms::{qemu_processes_of, skip_without_guest_kernel};
use corral_e2e::{path_str, sha256_hex, skip_unless_tools, unique_token, Corral};

/// Every VM command here is bounded by this (three TCG guests boot at once on two cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

/// A world for VM tests, or `None` after a loud SKIPPED line.
fn world(test: &str) -> Option<Corral> {
    if skip_unless_tools(test, &["qemu-system-x86_64", "qemu-img", "mkfs.ext4"]) {
        return None;
    }
    if skip_without_guest_kernel(test) {
        return None;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    Some(c)
}

/// Removes the VMs and templates a test made, even when it fails (VMs first: they use the
/// templates).
struct Guard<'a> {
    corral: &'a Corral,
    vms: Vec<String>,
    templates: Vec<String>,
}

impl<'a> Guard<'a> {
    fn new(corral: &'a Corral) -> Self {
        Guard {
            corral,
            vms: Vec::new(),
            templates: Vec::new(),
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        for n in &self.vms {
            let _ = self.corral.cmd(&["vm", "rm", "-f", n]);
        }
        for t in &self.templates {
            let _ = self.corral.cmd(&["vm", "template", "rm", t]);
        }
    }
}

/// No VM directory, no template or base directory, no QEMU of this world.
fn assert_nothing_left(c: &Corral) {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let vms: Vec<String> = names(&c.root().join("vms"))
        .into_iter()
        .filter(|n| n.len() == 64)
        .collect();
    assert!(vms.is_empty(), "VM directories left: {vms:?}");
    let templates: Vec<String> = names(&c.root().join("vm-templates"))
        .into_iter()
        .filter(|n| n != ".lock")
        .collect();
    assert!(
        templates.is_empty(),
        "template or base directories left: {templates:?}"
    );
    let qemus = qemu_processes_of(path_str(c.root()));
    assert!(
        qemus.is_empty(),
        "QEMU processes of this world still run: {qemus:?}"
    );
}

/// What a guest says of itself.
#[derive(Debug)]
struct Identity {
    hostname: String,
    machine_id: String,
    address: String,
    mac: String,
}

fn identity(c: &Corral, vm: &str) -> Identity {
    let out = c.ok(&[
        "vm",
        "exec",
        vm,
        "--",
        "sh",
        "-c",
        "hostname; cat /etc/machine-id; ip -4 -o addr show eth0; cat /sys/class/net/eth0/address",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{vm}: {out}");
    let address = lines[2]
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Identity {
        hostname: lines[0].to_owned(),
        machine_id: lines[1].to_owned(),
        address,
        mac: lines[3].to_owned(),
    }
}

fn vm_id(c: &Corral, vm: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", vm])).unwrap();
    v[0]["config"]["id"]
        .as_str()
        .or_else(|| v[0]["id"].as_str())
        .unwrap_or_else(|| panic!("no id in vm inspect {vm}: {v}"))
        .to_owned()
}

fn file_sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// Runs the busybox image's shell forever: the VM stays up for `vm exec`.
const IDLE: &str = "exec sleep 1000000";

#[test]
fn template_clones_boot_together_with_own_identity_and_disks() {
    let test = "template_clones_boot_together_with_own_identity_and_disks";
    let Some(c) = world(test) else {
        return;
    };
    let t = unique_token();
    let tok = &t[..6];
    let mut nets = NetworkGuard::new(&c);
    let net_name = format!("vc{}", &t[t.len() - 6..]);
    let net = nets.create(&net_name, 24, &[]);
    let mut guard = Guard::new(&c);
    let src = format!("s{tok}");
    let tpl = format!("t{tok}");
    guard.vms.push(src.clone());
    guard.templates.push(tpl.clone());

    // A VM that writes a file.
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &src,
        "--memory",
        "256M",
        "--disk",
        "1G",
        "--network",
        &net_name,
        "--image",
        corral_e2e::containers::BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        IDLE,
    ]);
    c.ok(&[
        "vm",
        "exec",
        &src,
        "--",
        "sh",
        "-c",
        "mkdir -p /srv && echo from-template > /srv/tpl && sync",
    ]);
    // A running VM is refused, with advice.
    let (code, err) = c.fail(&["vm", "template", &src, &tpl]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("corral vm stop"), "{err}");
    assert!(c
        .fail(&["vm", "template", &src, "ls"])
        .1
        .contains("reserved"));
    c.ok(&["vm", "stop", &src]);
    // Reserved names.
    let (_, err) = c.fail(&["vm", "template", &src, "rm"]);
    assert!(err.contains("reserved"), "{err}");

    // Template: the VM is gone; its disk is the template's, read-only.
    assert_eq!(c.ok(&["vm", "template", &src, &tpl]).trim(), tpl);
    let vms = c.ok(&["vm", "ls", "--json"]);
    assert!(!vms.contains(&src), "the templated VM is gone: {vms}");
    let tdir = c.root().join("vm-templates").join(&tpl);
    let disk = tdir.join("disk.qcow2");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&disk).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "the template's disk is read-only");
    assert!(tdir.join("template.json").is_file());
    let listed: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "template", "ls", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], tpl.as_str(), "{listed}");
    assert_eq!(listed[0]["source_vm"], src.as_str(), "{listed}");
    assert_eq!(listed[0]["disk_bytes"], 1u64 << 30, "{listed}");
    let disk_sha = file_sha(&disk);

    // Three clones, each made in well under a second (the overlay itself takes milliseconds:
    // benches/vm_clone.sh), booted at once.
    let clones: Vec<String> = (1..=3).map(|i| format!("c{i}{tok}")).collect();
    guard.vms.extend(clones.iter().cloned());
    for n in &clones {
        let t0 = Instant::now();
        c.ok(&["vm", "clone", &tpl, n]);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "vm clone took {took:?}");
    }
    std::thread::scope(|s| {
        for n in &clones {
            let c = &c;
            s.spawn(move || c.ok(&["vm", "start", n]));
        }
    });
    let mut ids = HashSet::new();
    let mut addresses = HashSet::new();
    let mut macs = HashSet::new();
    let prefix = net.subnet.rsplit_once('.').unwrap().0.to_owned();
    for n in &clones {
        let me = identity(&c, n);
        assert_eq!(&me.hostname, n, "{me:?}");
        let id = vm_id(&c, n);
        assert_eq!(
            me.machine_id,
            id[..32],
            "{n}: the machine id comes from the VM id"
        );
        assert!(
            me.address.starts_with(&prefix),
            "{n}: {me:?} on {}",
            net.subnet
        );
        assert!(ids.insert(me.machine_id.clone()), "{me:?}");
        assert!(addresses.insert(me.address.clone()), "{me:?}");
        assert!(macs.insert(me.mac.clone()), "{me:?}");
        assert_eq!(
            c.ok(&["vm", "exec", n, "--", "cat", "/srv/tpl"]),
            "from-template\n"
        );
    }
    // They reach each other on the network.
    let other = addresses
        .iter()
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    c.ok(&[
        "vm", "exec", &clones[0], "--", "ping", "-c", "1", "-W", "5", &other,
    ]);

    // A write in one clone is seen in no other, nor in the template.
    c.ok(&[
        "vm",
        "exec",
        &clones[0],
        "--",
        "sh",
        "-c",
        "echo one > /srv/own && echo changed >> /srv/tpl && sync",
    ]);
    for n in &clones[1..] {
        let out = c.cmd(&["vm", "exec", n, "--", "cat", "/srv/own"]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{n} sees another clone's file: {}",
            describe(&out)
        );
        assert_eq!(
            c.ok(&["vm", "exec", n, "--", "cat", "/srv/tpl"]),
            "from-template\n"
        );
    }
    assert_eq!(
        file_sha(&disk),
        disk_sha,
        "the template's disk is unchanged"
    );

    // The template is in use: its removal is refused and names the clones.
    let (code, err) = c.fail(&["vm", "template", "rm", &tpl]);
    assert_eq!(code, 125, "{err}");
    for n in &clones {
        assert!(err.contains(n.as_str()), "the error names {n}: {err}");
    }
    assert!(disk.is_file());

    // Clone of a stopped VM: both go on, each with its own disk from there.
    let first = &clones[0];
    let copy = format!("d{tok}");
    guard.vms.push(copy.clone());
    c.ok(&["vm", "stop", first]);
    let (code, err) = c.fail(&["vm", "clone", &clones[1], &format!("x{tok}")]);
    assert_eq!(code, 125, "a running VM cannot be cloned: {err}");
    assert!(err.contains("corral vm stop"), "{err}");
    c.ok(&["vm", "clone", first, &copy]);
    std::thread::scope(|s| {
        for n in [first, &copy] {
            let c = &c;
            s.spawn(move || c.ok(&["vm", "start", n]));
        }
    });
    for n in [first, &copy] {
        assert_eq!(
            c.ok(&["vm", "exec", n, "--", "cat", "/srv/own"]),
            "one\n",
            "{n}"
        );
        assert_eq!(
            c.ok(&["vm", "exec", n, "--", "cat", "/srv/tpl"]),
            "from-template\nchanged\n"
        );
        assert_eq!(identity(&c, n).hostname, *n);
    }
    c.ok(&[
        "vm",
        "exec",
        &copy,
        "--",
        "sh",
        "-c",
        "echo copy > /srv/copy && sync",
    ]);
    c.ok(&[
        "vm",
        "exec",
        first,
        "--",
        "sh",
        "-c",
        "echo first > /srv/first && sync",
    ]);
    assert_ne!(
        c.cmd(&["vm", "exec", first, "--", "cat", "/srv/copy"])
            .status
            .code(),
        Some(0)
    );
    assert_ne!(
        c.cmd(&["vm", "exec", &copy, "--", "cat", "/srv/first"])
            .status
            .code(),
        Some(0)
    );
    assert_ne!(
        identity(&c, first).machine_id,
        identity(&c, &copy).machine_id
    );
    let bases = std::fs::read_dir(c.root().join("vm-templates"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".base-"))
        .count();
    assert_eq!(
        bases, 1,
        "the stopped VM's disk was frozen into one hidden base"
    );
    // The base outlives the VM it came from while the copy uses it.
    c.ok(&["vm", "rm", "-f", first]);
    assert_eq!(
        c.ok(&["vm", "exec", &copy, "--", "cat", "/srv/own"]),
        "one\n"
    );

    // A VM whose disk holds snapshots is not frozen under them: refused, with what to do.
    let snap = format!("p{tok}");
    guard.vms.push(snap.clone());
    c.ok(&[
        "vm",
        "create",
        "--name",
        &snap,
        "--network",
        "none",
        "--image",
        corral_e2e::containers::BUSYBOX_IMAGE,
        "--",
        "true",
    ]);
    c.ok(&["vm", "snapshot", "create", &snap, "s1"]);
    let (code, err) = c.fail(&["vm", "clone", &snap, &format!("q{tok}")]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("snapshot"), "{err}");
    c.ok(&["vm", "rm", &snap]);

    // Everything goes: VMs, then the template, then nothing is left.
    let mut all: Vec<&str> = clones[1..].iter().map(String::as_str).collect();
    all.push(&copy);
    let mut args = vec!["vm", "rm", "-f"];
    args.extend(all);
    c.ok(&args);
    assert_eq!(c.ok(&["vm", "template", "rm", &tpl]).trim(), tpl);
    assert_eq!(c.ok(&["vm", "template", "ls", "--json"]).trim(), "[]");
    assert_nothing_left(&c);
}
