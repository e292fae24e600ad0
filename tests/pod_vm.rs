//! End-to-end tests of VM pods (`corral pod create --isolation vm`), checked as a user checks
//! them: the pod's containers run inside one VM of the pod's own (its kernel, its PID 1 is
//! corral's agent), share its network (one `localhost`, the pod's published port reaches
//! them from the host), keep root filesystems of their own, and are containers to every
//! command: `run -d`/`run --rm` with exit codes, `exec`, `logs`, `stop`, `kill`, `rm`, `pod
//! rm` that leaves no VM, no QEMU, no virtiofsd and no mount behind.
//!
//! The guest kernel runs under TCG here; one VM is booted for the whole pod.

use std::net::SocketAddr;
use std::time::Duration;

use corral_e2e::checks::PodGuard;
use corral_e2e::containers::{poll_until, BUSYBOX_IMAGE};
use corral_e2e::networks::{free_tcp_port, http_get_ok, NetworkGuard};
use corral_e2e::vms::{assert_no_vm_leftovers, guest_kernel, skip_without_guest_kernel};
use corral_e2e::{
    find_tool, report_skip, skip_unless_tools, stderr_of, unique_token, ContainerGuard, Corral,
};

/// Deadline of one command: a VM pod's first start boots a guest under TCG.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// A world for VM pods, or `None` (after a loud SKIPPED line) where one cannot run.
fn world(test: &str) -> Option<Corral> {
    if skip_unless_tools(test, &["qemu-system-x86_64", "ip", "nft"]) {
        return None;
    }
    if skip_without_guest_kernel(test) {
        return None;
    }
    if find_tool("virtiofsd").is_none() && !std::path::Path::new("/usr/libexec/virtiofsd").exists()
    {
        report_skip(test, "no virtiofsd (scripts/setup.sh builds it)");
        return None;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    Some(c)
}

#[test]
fn a_vm_pod_runs_its_containers_in_one_guest() {
    let Some(c) = world("a_vm_pod_runs_its_containers_in_one_guest") else {
        return;
    };
    let t = unique_token();
    let mut nets = NetworkGuard::new(&c);
    let net = format!("pv{}", &t[t.len() - 6..]);
    nets.create(&net, 24, &[]);
    let mut pods = PodGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let pod = format!("vp{}", &t[..6]);
    pods.track(&pod);
    let port = free_tcp_port();
    c.ok(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--isolation",
        "vm",
        "--memory",
        "384m",
        "--network",
        &net,
        "-p",
        &format!("127.0.0.1:{port}:8080"),
    ]);
    let inspect = c.ok(&["pod", "inspect", &pod]);
    assert!(
        inspect.contains("\"Isolation\": \"vm\""),
        "pod inspect shows the isolation: {inspect}"
    );

    // A web server in one member; the first start boots the pod's VM.
    let web = format!("{pod}-web");
    guard.track(&web);
    c.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    // The VM is the pod's: `vm ls` shows it under the pod's name.
    let vms = c.ok(&["vm", "ls"]);
    assert!(vms.contains(&pod), "vm ls lists the pod's VM: {vms}");

    // Another member reaches it on localhost: one network namespace, the VM's.
    let out = c.cmd(&[
        "run",
        "--rm",
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.5; done; exit 1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a member reaches another on localhost: {}",
        stderr_of(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-from-the-pod"),
        "run --rm relays the member's output: {out:?}"
    );
    // The pod's published port reaches the server from the host.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answer = http_get_ok(addr, "/", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}/: {e}"));
    assert!(answer.contains("hello-from-the-pod"), "{answer}");

    // The member runs on the guest's kernel, whose PID 1 is corral's agent.
    let kernel = guest_kernel().expect("kernel");
    let uname = c.ok(&["exec", &web, "uname", "-r"]);
    assert_eq!(uname.trim(), kernel, "exec runs in the pod's guest");
    let init = c.ok(&["exec", &web, "cat", "/proc/1/cmdline"]);
    assert!(
        init.starts_with("/init"),
        "PID 1 the member sees is the guest's agent (/init), got {init:?}"
    );

    // Each member has a root of its own (its image's files and its own changes).
    c.ok(&["exec", &web, "sh", "-c", "echo mine > /only-in-web"]);
    let out = c.cmd(&[
        "run",
        "--rm",
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "test",
        "-e",
        "/only-in-web",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "another member does not see web's file: {out:?}"
    );
    let diff = c.ok(&["diff", &web]);
    assert!(
        diff.contains("A /only-in-web"),
        "the member's changes are in its own upper directory on the host: {diff}"
    );

    // Exit codes as docker gives them.
    let out = c.cmd(&[
        "run",
        "--rm",
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = c.cmd(&[
        "run",
        "--rm",
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "no-such-command",
    ]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");

    // Logs of a detached member.
    let talker = format!("{pod}-talk");
    guard.track(&talker);
    c.ok(&[
        "run",
        "-d",
        "--name",
        &talker,
        "--pod",
        &pod,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo logged-line; echo to-stderr >&2; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let logged = poll_until(Duration::from_secs(20), || {
        let l = c.cmd(&["logs", &talker]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&l.stdout),
            String::from_utf8_lossy(&l.stderr)
        );
        all.contains("logged-line") && all.contains("to-stderr")
    });
    assert!(logged, "logs show both streams of the member");

    // stop: the stop signal reaches the guest process, which exits 0 on TERM.
    c.ok(&["stop", "-t", "20", &talker]);
    let code = c.ok(&["inspect", "--format", "{{.State.ExitCode}}", &talker]);
    assert_eq!(code.trim(), "0", "the member exited by its TERM trap");
    // kill: SIGKILL ends it with 137, also right after a start (the signal then reaches a
    // monitor that may end before it answers, or find the previous run's still ending).
    for round in 0..6 {
        c.ok(&["start", &talker]);
        c.ok(&["kill", &talker]);
        let dead = poll_until(Duration::from_secs(20), || {
            let s = c.ok(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                &talker,
            ]);
            s.trim() == "exited 137"
        });
        assert!(dead, "kill ends the member with 137 (round {round})");
    }

    // What a VM pod cannot give is refused, and nothing is made.
    let out = c.cmd(&[
        "run",
        "--rm",
        "--pod",
        &pod,
        "-m",
        "64m",
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(stderr_of(&out).contains("VM pod"), "{}", stderr_of(&out));

    // pod rm -f: members, VM, virtiofsd, mounts all gone.
    c.ok(&["pod", "rm", "-f", &pod]);
    let left = c.ok(&["ps", "-a", "-q"]);
    assert!(
        left.trim().is_empty(),
        "pod rm removed its containers: {left}"
    );
    assert_no_vm_leftovers(&c);
    let root = c.root().to_string_lossy().into_owned();
    assert!(
        corral_e2e::vms::processes_of("virtiofsd", &root).is_empty(),
        "no virtiofsd of this world is left"
    );
    c.assert_no_leaks();
}

#[test]
fn vm_pod_flags_are_checked() {
    let test = "vm_pod_flags_are_checked";
    if skip_unless_tools(test, &["ip", "nft"]) {
        return;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    let (code, err) = c.fail(&["pod", "create", "--isolation", "kata"]);
    assert_eq!(code, 125);
    assert!(err.contains("expected container or vm"), "{err}");
    let (code, err) = c.fail(&["pod", "create", "--cpus", "2"]);
    assert_eq!(code, 125);
    assert!(err.contains("--isolation vm"), "{err}");
    // A hostname of its own is the guest's (a Kubernetes pod's VM is named by corral, its
    // hostname is the pod's name); made and removed without booting.
    c.ok(&[
        "pod",
        "create",
        "--isolation",
        "vm",
        "--name",
        "a",
        "--hostname",
        "b",
    ]);
    c.ok(&["pod", "rm", "a"]);
    let pods = c.ok(&["pod", "ls", "-q"]);
    assert!(pods.trim().is_empty(), "nothing was made: {pods}");
}
