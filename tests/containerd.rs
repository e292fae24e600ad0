//! containerd 1.6 (Debian's) running containers with corral as its runc shim's runtime binary:
//! `ctr run --runc-binary <corral-runtime>`, then exec, kill and delete.

use std::path::Path;
use std::time::Duration;

use corral_e2e::containerd::Containerd;
use corral_e2e::containers::{poll_until, BUSYBOX_IMAGE};
use corral_e2e::process::describe;
use corral_e2e::{path_str, skip_unless_root, skip_unless_tools, Corral};

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `corral-runtime`, a link to the corral binary in a temp dir: argv[0] selects the runtime
/// command line.
fn runtime_link(c: &Corral) -> std::path::PathBuf {
    let link = c.path("bin").join("corral-runtime");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(corral_e2e::corral_bin(), &link).unwrap();
    link
}

#[test]
fn containerd_runs_exec_and_kills_through_corral() {
    let name = "containerd_runs_exec_and_kills_through_corral";
    if skip_unless_root(name)
        || skip_unless_tools(name, &["containerd", "ctr", "containerd-shim-runc-v2"])
    {
        return;
    }
    let c = Corral::new();
    c.busybox_image();
    let archive = c.path("busybox.tar");
    c.ok(&["image", "save", BUSYBOX_IMAGE, "-o", path_str(&archive)]);
    let runtime = runtime_link(&c);
    let ctd = Containerd::start();
    let o = ctd.ctr(&["image", "import", path_str(&archive)]);
    assert!(o.status.success(), "ctr image import: {}", describe(&o));
    let image = "docker.io/library/busybox:test";

    // Foreground run: output and exit code come back through the shim.
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        path_str(&runtime),
        image,
        "fg",
        "/bin/busybox",
        "sh",
        "-c",
        "echo from containerd; exit 3",
    ]);
    assert_eq!(out(&o), "from containerd\n", "{}", describe(&o));
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));

    // Detached: running, exec with its own exit code, kill, delete.
    let o = ctd.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        path_str(&runtime),
        image,
        "bg",
        "/bin/busybox",
        "sh",
        "-c",
        "while true; do /bin/busybox sleep 0.2; done",
    ]);
    assert!(
        o.status.success(),
        "ctr run -d: {}\n{}",
        describe(&o),
        ctd.log()
    );
    assert!(
        poll_until(Duration::from_secs(10), || out(&ctd.ctr(&["task", "ls"]))
            .contains("RUNNING")),
        "task not running: {}",
        out(&ctd.ctr(&["task", "ls"]))
    );
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "/bin/busybox",
        "sh",
        "-c",
        "echo exec; exit 4",
    ]);
    assert_eq!(out(&o), "exec\n", "{}", describe(&o));
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let o = ctd.ctr(&["task", "kill", "-s", "SIGKILL", "bg"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        poll_until(Duration::from_secs(10), || out(&ctd.ctr(&["task", "ls"]))
            .contains("STOPPED")),
        "task not stopped"
    );
    let o = ctd.ctr(&["task", "delete", "bg"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = ctd.ctr(&["container", "delete", "bg"]);
    assert!(o.status.success(), "{}", describe(&o));

    // Nothing of the containers is left in the cgroup tree.
    for h in ["memory", "pids", "cpu"] {
        let dir = Path::new("/sys/fs/cgroup").join(h).join(&ctd.namespace);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "cgroups left under {}: {left:?}",
            dir.display()
        );
    }
}
