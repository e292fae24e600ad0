//! What comes back after the host restarts: `corral start --all-restartable`, which a boot unit
//! runs (corral has no daemon to do it). A host going down is what it does to corral's
//! processes: every monitor and what it supervises is killed at once (`kill -9`), and the
//! records still say "running". Then the containers and VMs that ran with a restart policy
//! start again, with their ids and names; one stopped by the user, and one without a policy,
//! stay stopped.

use std::time::Duration;

use corral_e2e::containers::{parent_pid, BUSYBOX_IMAGE};
use corral_e2e::vms::{guest_kernel, VmGuard};
use corral_e2e::{report_skip, skip_unless_root, unique_name, ContainerGuard, Corral};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

fn status(c: &Corral, what: &str, name: &str) -> String {
    let args: Vec<&str> = if what == "vm" {
        vec!["vm", "inspect", name]
    } else {
        vec!["inspect", "--format", "{{.State.Status}}", name]
    };
    let out = c.ok(&args);
    if what == "vm" {
        let v: serde_json::Value = serde_json::from_str(&out).expect("vm inspect is JSON");
        v[0]["state"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    } else {
        out.trim().to_owned()
    }
}

#[test]
fn start_all_restartable_brings_back_what_ran_with_a_restart_policy() {
    let test = "start_all_restartable_brings_back_what_ran_with_a_restart_policy";
    if skip_unless_root(test) {
        return;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    let mut g = ContainerGuard::new(&c);
    let (back, stopped, plain) = (unique_name("rb"), unique_name("rs"), unique_name("rn"));
    for (name, flags) in [
        (&back, &["--restart", "always"][..]),
        (&stopped, &["--restart", "unless-stopped"][..]),
        (&plain, &[][..]),
    ] {
        g.track(name);
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[BUSYBOX_IMAGE, "sleep", "1000"]);
        c.ok(&args);
    }
    c.ok(&["stop", "-t", "1", &stopped]);
    let id_before = c.ok(&["inspect", "--format", "{{.Id}}", &back]);
    // An image VM with a restart policy, when the host can boot one.
    let mut vms = VmGuard::new(&c);
    let vm = unique_name("rv");
    let with_vm = guest_kernel().is_some() && corral_e2e::find_tool("qemu-system-x86_64").is_some();
    if with_vm {
        vms.track(&vm);
        c.ok(&[
            "vm",
            "run",
            "-d",
            "--name",
            &vm,
            "--network",
            "none",
            "--restart",
            "always",
            "--image",
            BUSYBOX_IMAGE,
            "--",
            "sleep",
            "1000",
        ]);
    } else {
        report_skip(test, "the VM part: no QEMU or guest kernel here");
    }

    // The host goes down: every monitor and its workload die at once.
    for name in [&back, &plain] {
        let pid: u32 = c
            .ok(&["inspect", "--format", "{{.State.Pid}}", name])
            .trim()
            .parse()
            .expect("a running container's pid");
        let monitor = parent_pid(pid).expect("its monitor");
        kill9(monitor);
        kill9(pid);
    }
    if with_vm {
        let v: serde_json::Value =
            serde_json::from_str(&c.ok(&["vm", "inspect", &vm])).expect("vm inspect is JSON");
        for key in ["monitor_pid", "qemu_pid"] {
            if let Some(pid) = v[0]["state"][key].as_u64() {
                kill9(pid as u32);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&c, "container", &back), "exited");
    if with_vm {
        assert_eq!(status(&c, "vm", &vm), "stopped");
    }

    // The boot unit's command.
    let out = c.ok(&["start", "--all-restartable"]);
    assert!(out.contains(&format!("container {back}")), "{out}");
    assert!(!out.contains(&stopped) && !out.contains(&plain), "{out}");
    assert_eq!(status(&c, "container", &back), "running", "it came back");
    assert_eq!(
        c.ok(&["inspect", "--format", "{{.Id}}", &back]),
        id_before,
        "the same container"
    );
    assert_eq!(
        status(&c, "container", &stopped),
        "exited",
        "stopped by the user: it stays stopped"
    );
    assert_eq!(
        status(&c, "container", &plain),
        "exited",
        "no policy: it stays"
    );
    if with_vm {
        assert!(out.contains(&format!("vm {vm}")), "{out}");
        assert_eq!(status(&c, "vm", &vm), "running", "the VM came back");
        c.ok(&["vm", "rm", "-f", &vm]);
    }
    // Nothing else to bring back: a second run starts nothing.
    let again = c.ok(&["start", "--all-restartable"]);
    assert!(again.trim().is_empty(), "{again}");
}
