//! End-to-end tests with a real Debian 12 disk (debootstrap from Debian's packages: systemd,
//! cloud-init, openssh-server, systemd-networkd; built once per machine and cached, see
//! `corral_e2e::debian`), checked as a sysadmin checks a VM: it boots to a login prompt on the
//! serial console, takes its address from corral's DHCP (the one `vm ls` shows), cloud-init
//! names it and lets its user in by key and by password, ssh reaches it through a published
//! port; a clone is another machine (MAC, address, hostname, machine-id, SSH host keys), the
//! two reach each other by name; a disk grown online shows in the guest, and a reboot from
//! inside reboots it (the VM keeps running), after which cloud-init has grown the filesystem.
//!
//! Boots are slow under TCG (cloud-init is Python): the steps are chained in one test, with
//! three boots in a row (the source; the source again beside its clone; the clone's reboot).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use corral_e2e::containers::poll_until;
use corral_e2e::debian::debian12_disk;
use corral_e2e::networks::{free_tcp_port, NetworkGuard};
use corral_e2e::process::{describe, run_bounded, run_ok};
use corral_e2e::vms::{assert_no_vm_leftovers, VmGuard};
use corral_e2e::{path_str, report_skip, skip_unless_tools, stdout_of, unique_name, Corral};

/// Bound on one corral command (a create copies the ~600 MB disk into the VM's directory).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Bound on a boot to the login prompt and to a working sshd under TCG (cloud-init's first
/// boot, with two guests booting at once on two shared cores).
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

/// Bound on one ssh command.
const SSH_TIMEOUT: Duration = Duration::from_secs(90);

/// The user cloud-init makes in the guest.
const USER: &str = "admin";

/// A world with the Debian disk, or `None` after a loud SKIPPED line.
fn world(test: &str) -> Option<(Corral, PathBuf)> {
    if skip_unless_tools(
        test,
        &["qemu-system-x86_64", "genisoimage", "ssh", "ssh-keygen"],
    ) {
        return None;
    }
    let disk = match debian12_disk() {
        Ok(d) => d,
        Err(why) => {
            report_skip(test, &why);
            return None;
        }
    };
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    Some((c, disk))
}

/// How the host reaches one guest's sshd.
#[derive(Clone)]
struct Ssh {
    key: PathBuf,
    host: String,
    port: u16,
}

impl Ssh {
    /// `ssh USER@host -p port -- script`, bounded; never asks (BatchMode), trusts any host key
    /// (each boot of a new instance makes new ones: that is checked by reading them).
    fn run(&self, script: &str) -> Output {
        let port = self.port.to_string();
        let target = format!("{USER}@{}", self.host);
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-i",
            path_str(&self.key),
            "-p",
            &port,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            &target,
            "--",
            script,
        ]);
        run_bounded(&mut cmd, None, SSH_TIMEOUT)
    }

    /// As [`Ssh::run`], panicking unless it succeeds; its stdout, trimmed.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "ssh {}:{} {script}: {}",
            self.host,
            self.port,
            describe(&out)
        );
        stdout_of(&out).trim().to_owned()
    }

    /// Waits until sshd lets the user in and cloud-init has finished (at most
    /// [`BOOT_TIMEOUT`]); panics, naming `vm`, when it does not.
    fn wait_up(&self, vm: &str) {
        let up = poll_until(BOOT_TIMEOUT, || {
            let out = self.run("cloud-init status --wait >/dev/null; cloud-init status");
            std::thread::sleep(Duration::from_secs(1));
            out.status.success() && stdout_of(&out).contains("done")
        });
        assert!(
            up,
            "{vm}: ssh {}:{} never let {USER} in: {}",
            self.host,
            self.port,
            describe(&self.run("true"))
        );
    }
}

/// `vm inspect VM`, parsed (the one VM's object).
fn inspect(c: &Corral, vm: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "inspect", vm])).expect("vm inspect is JSON");
    v[0].clone()
}

/// The VM's address on its first network, as `vm inspect` shows it.
fn address_of(c: &Corral, vm: &str) -> (Ipv4Addr, String) {
    let info = inspect(c, vm);
    let ep = &info["network_endpoints"][0];
    let ip = ep["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{vm}: no address in vm inspect: {info:#}"));
    let mac = ep["mac"].as_str().unwrap_or_default().to_owned();
    (ip.parse().expect("an IPv4 address"), mac)
}

/// How many login prompts (`HOSTNAME login: `, which the kernel's and cloud-init's messages
/// may follow on the same line) the VM's serial console has shown.
fn login_prompts(c: &Corral, vm: &str) -> usize {
    c.ok(&["vm", "logs", "--console", vm])
        .matches(" login: ")
        .count()
}

/// Waits for the `n`th login prompt on the console; the time it took.
fn wait_login(c: &Corral, vm: &str, n: usize) -> Duration {
    let t0 = Instant::now();
    let up = poll_until(BOOT_TIMEOUT, || {
        std::thread::sleep(Duration::from_millis(400));
        login_prompts(c, vm) >= n
    });
    assert!(
        up,
        "{vm}: no login prompt #{n} on the serial console: {}",
        c.ok(&["vm", "logs", "--console", vm])
    );
    t0.elapsed()
}

/// A guest's identity, as a sysadmin reads it.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    hostname: String,
    machine_id: String,
    host_key: String,
    mac: String,
}

fn identity(ssh: &Ssh) -> Identity {
    let text = ssh.ok(
        "hostname; cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub; \
         cat /sys/class/net/e*/address",
    );
    let mut l = text.lines().map(str::to_owned);
    let mut next = || l.next().unwrap_or_default();
    Identity {
        hostname: next(),
        machine_id: next(),
        host_key: next(),
        mac: next(),
    }
}

/// The guest's DHCP lease (systemd-networkd's lease file) and its global IPv4 addresses.
fn dhcp_facts(ssh: &Ssh) -> (String, String) {
    let lease = ssh.ok("cat /run/systemd/netif/leases/*");
    let addrs = ssh.ok("ip -4 -o addr show scope global");
    (lease, addrs)
}

/// The user-data: the user, its key and password, as a sysadmin writes it.
fn user_data(c: &Corral, pubkey: &str, password: &str) -> PathBuf {
    let path = c.path("user-data.yaml");
    std::fs::write(
        &path,
        format!(
            "#cloud-config\nusers:\n  - name: {USER}\n    shell: /bin/bash\n    groups: [sudo]\n    \
             sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    lock_passwd: false\n    \
             plain_text_passwd: {password}\n    ssh_authorized_keys:\n      - {pubkey}\n\
             ssh_pwauth: true\n"
        ),
    )
    .unwrap();
    path
}

fn ssh_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("id_ed25519");
    run_ok(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", path_str(&key)],
        Duration::from_secs(30),
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// The root filesystem's size in bytes.
fn root_fs_bytes(ssh: &Ssh) -> u64 {
    ssh.ok("df -B1 --output=size / | tail -n 1")
        .trim()
        .parse()
        .expect("df prints a size")
}

/// The guest's view of its boot disk's capacity, in bytes.
fn disk_bytes(ssh: &Ssh) -> u64 {
    let sectors: u64 = ssh
        .ok("cat /sys/block/vda/size")
        .parse()
        .expect("a sector count");
    sectors * 512
}

#[test]
fn debian_vm_boots_clones_reboots_and_grows_as_a_sysadmin_expects() {
    let test = "debian_vm_boots_clones_reboots_and_grows_as_a_sysadmin_expects";
    let Some((c, disk)) = world(test) else {
        return;
    };
    let token = unique_name("d");
    let mut nets = NetworkGuard::new(&c);
    let net = format!("db{}", &token[token.len() - 6..]);
    let network = nets.create(&net, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let a = unique_name("deba");
    let b = unique_name("debb");
    guard.track(&a);
    guard.track(&b);
    let (key, pubkey) = ssh_key(c.work());
    let password = format!("pw{}", &token[token.len() - 8..]);
    let ud = user_data(&c, &pubkey, &password);
    let port = free_tcp_port();

    // 1. The source VM boots to a login prompt on its serial console.
    let t0 = Instant::now();
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &a,
        "--cpus",
        "1",
        "--memory",
        "1G",
        "--network",
        &net,
        "-p",
        &format!("127.0.0.1:{port}:22"),
        "--boot-disk",
        path_str(&disk),
        "--cloud-init",
        path_str(&ud),
    ]);
    let created = t0.elapsed();
    let login = wait_login(&c, &a, 1);
    eprintln!("{a}: vm run {created:?}, then the login prompt after {login:?}");

    // 2. ssh through the published port lets the user in by key, once cloud-init is done.
    let ssh_a = Ssh {
        key: key.clone(),
        host: "127.0.0.1".into(),
        port,
    };
    ssh_a.wait_up(&a);
    let id_a = identity(&ssh_a);
    assert_eq!(id_a.hostname, a, "cloud-init set the hostname");
    assert_eq!(id_a.machine_id.len(), 32, "{id_a:?}");
    assert!(!id_a.host_key.is_empty(), "{id_a:?}");

    // 3. The address came from corral's DHCP: the lease is the address `vm ls` and `vm inspect`
    // show, from the network's gateway, and the NIC is the VM's.
    let (ip_a, mac_a) = address_of(&c, &a);
    assert_eq!(id_a.mac, mac_a, "the guest's NIC has the VM's MAC");
    let ls = c.ok(&["vm", "ls"]);
    assert!(ls.contains(&ip_a.to_string()), "vm ls shows {ip_a}: {ls}");
    let (lease, addrs) = dhcp_facts(&ssh_a);
    assert!(
        lease.contains(&format!("ADDRESS={ip_a}\n")),
        "networkd's lease is {ip_a}: {lease}"
    );
    assert!(
        lease.contains(&format!("SERVER_ADDRESS={}", network.gateway))
            && lease.contains(&format!("DOMAINNAME={net}")),
        "the lease is corral's, with the network as domain: {lease}"
    );
    assert!(
        addrs.contains(&format!("inet {ip_a}/24")) && addrs.contains("dynamic"),
        "the guest holds {ip_a} from DHCP: {addrs}"
    );

    // 4. cloud-init set the user's password: its hash in /etc/shadow is of that password.
    let check = format!(
        "sudo python3 -W ignore -c 'import crypt, spwd; h = spwd.getspnam(\"{USER}\").sp_pwdp; \
         print(crypt.crypt(\"{password}\", h) == h)'"
    );
    assert_eq!(ssh_a.ok(&check), "True", "the password works");

    // 5. The source stops cleanly (ACPI), and is cloned: a new machine beside it.
    c.ok(&["vm", "stop", &a]);
    assert_eq!(inspect(&c, &a)["state"]["status"], "stopped");
    c.ok(&["vm", "clone", &a, &b]);
    c.ok(&["vm", "start", &a, &b]);
    let (ip_b, mac_b) = address_of(&c, &b);
    let ssh_b = Ssh {
        key: key.clone(),
        host: ip_b.to_string(),
        port: 22,
    };
    ssh_a.wait_up(&a);
    ssh_b.wait_up(&b);
    let id_a2 = identity(&ssh_a);
    assert_eq!(
        id_a2, id_a,
        "the source keeps its identity across a restart"
    );
    assert_eq!(
        address_of(&c, &a).0,
        ip_a,
        "the source keeps its address across a restart"
    );
    let id_b = identity(&ssh_b);
    assert_eq!(id_b.hostname, b, "the clone is named after itself");
    assert_eq!(id_b.mac, mac_b, "the clone's NIC has the clone's MAC");
    assert_ne!(mac_b, mac_a, "the clone has a MAC of its own");
    assert_ne!(ip_b, ip_a, "the clone has an address of its own");
    assert!(
        dhcp_facts(&ssh_b).0.contains(&format!("ADDRESS={ip_b}\n")),
        "the clone's address came from DHCP"
    );
    assert_ne!(
        id_b.host_key, id_a.host_key,
        "the clone made SSH host keys of its own"
    );
    assert_ne!(
        id_b.machine_id, id_a.machine_id,
        "the clone has a machine-id of its own"
    );
    // The published port stays the source's (a clone gets none).
    assert_eq!(ssh_a.ok("hostname"), a);

    // 6. The two reach each other by name: the short name (systemd-resolved tries it under the
    // search domain DHCP gave, and on the link by LLMNR) and the name under the network's
    // domain, which only corral's DNS answers.
    ssh_a.ok(&format!("ping -c 1 -W 5 {b}"));
    ssh_b.ok(&format!("ping -c 1 -W 5 {a}"));
    for (from, name, ip) in [(&ssh_a, &b, ip_b), (&ssh_b, &a, ip_a)] {
        let fqdn = format!("{name}.{net}");
        let resolved = from.ok(&format!("getent ahostsv4 {fqdn} | head -n 1"));
        assert!(
            resolved.starts_with(&format!("{ip} ")),
            "{fqdn} is {ip}: {resolved}"
        );
    }

    // 7. The clone's disk grows online: the guest sees the new capacity at once.
    let disk_before = disk_bytes(&ssh_b);
    let fs_before = root_fs_bytes(&ssh_b);
    c.ok(&["vm", "disk", "resize", &b, "+1G"]);
    let grown = poll_until(Duration::from_secs(30), || {
        disk_bytes(&ssh_b) == disk_before + (1 << 30)
    });
    assert!(
        grown,
        "the guest sees its disk grow by 1 GiB: {} -> {}",
        disk_before,
        disk_bytes(&ssh_b)
    );

    // 8. A reboot from inside reboots it: the VM keeps running, a new boot comes up with the
    // same address, and cloud-init's growpart and resizefs grew the root filesystem at boot.
    let boot_id = ssh_b.ok("cat /proc/sys/kernel/random/boot_id");
    let prompts = login_prompts(&c, &b);
    let asked = ssh_b.run("sudo systemctl reboot");
    let mut seen_stopped = false;
    let rebooted = poll_until(BOOT_TIMEOUT, || {
        std::thread::sleep(Duration::from_millis(500));
        seen_stopped |= inspect(&c, &b)["state"]["status"] != "running";
        login_prompts(&c, &b) > prompts
    });
    assert!(
        rebooted,
        "{b}: no login prompt after the reboot (asked by ssh: {}): {}",
        describe(&asked),
        c.ok(&["vm", "logs", "--console", &b])
    );
    assert!(
        !seen_stopped,
        "the VM kept running across its guest's reboot"
    );
    ssh_b.wait_up(&b);
    assert_ne!(
        ssh_b.ok("cat /proc/sys/kernel/random/boot_id"),
        boot_id,
        "a new boot"
    );
    assert_eq!(
        address_of(&c, &b).0,
        ip_b,
        "the same address after the reboot"
    );
    let fs_after = root_fs_bytes(&ssh_b);
    assert!(
        fs_after > fs_before + (900 << 20),
        "the root filesystem grew at boot: {fs_before} -> {fs_after}"
    );

    c.ok(&["vm", "rm", "-f", &a, &b]);
    assert_no_vm_leftovers(&c);
}
