//! End-to-end test of `runtimeClassName: vm` on `corral serve`, driven with the real
//! `kubectl`: the pod runs in a VM of its own (its kernel is the guest's, not the host's, and
//! its PID 1 is corral's agent), with the same status, logs and exec as any pod, sized from
//! its containers' limits; deleting it leaves no QEMU behind. A RuntimeClass that does not
//! exist, and one whose handler corral does not run, keep the pod from starting and say why.
//!
//! The guest boots under TCG here, so one VM pod is started for the whole test.

use std::time::{Duration, Instant};

use corral_e2e::report_skip;
use corral_e2e::serve::Serve;
use corral_e2e::vms::{guest_kernel, qemu_processes_of};
use corral_e2e::{find_tool, skip_unless_tools};

const VM_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: guest}
spec:
  runtimeClassName: vm
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "echo in-the-vm $(uname -r); trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    resources: {limits: {cpu: "1", memory: 256Mi}}
"#;

fn events_of(s: &Serve, name: &str) -> String {
    let sel = format!("involvedObject.name={name}");
    s.ok(&["get", "events", "--field-selector", &sel])
}

#[test]
fn a_pod_of_runtime_class_vm_runs_in_a_vm_of_its_own() {
    let test = "a_pod_of_runtime_class_vm_runs_in_a_vm_of_its_own";
    if skip_unless_tools(test, &["qemu-system-x86_64", "ip", "nft"]) {
        return;
    }
    let Some(kernel) = guest_kernel() else {
        report_skip(
            test,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return;
    };
    if find_tool("virtiofsd").is_none() && !std::path::Path::new("/usr/libexec/virtiofsd").exists()
    {
        report_skip(test, "no virtiofsd (scripts/setup.sh builds it)");
        return;
    }
    let Some(s) = Serve::start(test) else {
        return;
    };
    let root = s.world.root().to_str().unwrap().to_string();

    // Bad runtime classes: the pod waits and the event says why.
    s.apply(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: alien}\nhandler: runsc\n",
        &[],
    );
    let bad = |name: &str, class: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: {class}\n  containers: [{{name: c, image: busybox:test, command: [sleep, '60']}}]\n")
    };
    s.apply(&bad("nowhere", "nosuch"), &[]);
    s.apply(&bad("foreign", "alien"), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (events_of(&s, "nowhere"), events_of(&s, "foreign"));
        if a.contains("RuntimeClass \"nosuch\" not found") && b.contains("has handler \"runsc\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no FailedCreatePodSandBox events:\n{a}\n{b}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    s.ok(&[
        "delete",
        "pod",
        "nowhere",
        "foreign",
        "--wait=true",
        "--timeout=60s",
    ]);

    // The VM pod.
    s.apply(VM_POD, &[]);
    s.wait_ready("default", "guest");
    let pod = s.json(&["get", "pod", "guest"]);
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert!(pod["status"]["podIP"].is_string(), "{pod}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let l = s.ok(&["logs", "guest"]);
        if l.contains("in-the-vm") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // The guest's kernel, not the host's.
    assert!(
        logs.contains(&format!("in-the-vm {kernel}")),
        "the container runs on the guest kernel {kernel}: {logs:?}"
    );
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let out = s.ok(&["exec", "guest", "--", "uname", "-r"]);
    assert_eq!(out.trim(), kernel, "exec runs in the guest");
    if host_kernel.trim() != kernel {
        assert_ne!(out.trim(), host_kernel.trim());
    }
    let host = s.ok(&["exec", "guest", "--", "hostname"]);
    assert_eq!(host.trim(), "guest", "the pod's hostname is its name");
    let qemus = qemu_processes_of(&root);
    assert_eq!(qemus.len(), 1, "one QEMU for the VM pod: {qemus:?}");
    // Sized from the limits: 256 MiB plus the guest's overhead, at least 512 MiB.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", qemus[0])).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mem = args
        .iter()
        .position(|a| a == "-m")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    assert!(mem.starts_with("512"), "QEMU's -m {mem:?} ({args:?})");

    s.ok(&["delete", "pod", "guest", "--wait=true", "--timeout=120s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !qemu_processes_of(&root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the VM pod's QEMU outlived the pod"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
