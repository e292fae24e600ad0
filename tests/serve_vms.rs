//! End-to-end tests of VirtualMachines (`corral.dev/v1`) on `corral serve`, driven with the
//! real `kubectl` as a user drives KubeVirt: a VM applied with a Service in front answers
//! through the Service's virtual IP; `corral vm ls` shows the same VM; QEMU killed with -9
//! is started again by `runStrategy: Always`; `Halted` stops it and `Always` brings it back;
//! a VirtualMachineClone waits for its source to stop and makes a VM of its own identity
//! behind the same Service, and reaches that Service's virtual IP from inside; a
//! VirtualMachineSnapshot is the engine's snapshot and goes with
//! its object, and a VirtualMachineRestore waits for the VM to stop and puts its disk back; `kubectl explain` reads the schema; a VM too big for any node stays unplaced with a
//! reason; bad specs are refused with 422 and unknown fields with 400; deleting the
//! namespace removes the VM and its QEMU, and leaves nothing behind.
//!
//! The guest kernel runs under TCG here; an image VM boots to its agent in seconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;
use corral_e2e::skip_unless_tools;
use corral_e2e::vms::{qemu_processes_of, skip_without_guest_kernel};

const VM: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: vmtest}
---
apiVersion: corral.dev/v1
kind: VirtualMachine
metadata:
  name: web
  namespace: vmtest
  labels: {app: webvm}
spec:
  image: busybox:test
  memory: 256Mi
  command: ["sh", "-c", "mkdir -p /www && echo vm-$(hostname) > /www/index.html && httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: webvm, namespace: vmtest}
spec:
  selector: {app: webvm}
  ports:
  - {port: 80, targetPort: 8080}
"#;

/// How long a VM may take to boot to its agent under TCG.
const BOOT: Duration = Duration::from_secs(180);

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One HTTP GET of `/index.html`: the body, or `None`.
fn get(addr: SocketAddr) -> Option<String> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

fn vm_field(s: &Serve, path: &str) -> String {
    s.jsonpath("vmtest", "vm", "web", path)
}

/// `kubectl patch` of a VM's run strategy, as a user starts and stops it.
fn set_run_strategy(s: &Serve, vm: &str, strategy: &str) {
    let patch = format!(r#"{{"spec":{{"runStrategy":"{strategy}"}}}}"#);
    s.ok(&[
        "-n",
        "vmtest",
        "patch",
        "vm",
        vm,
        "--type=merge",
        "-p",
        &patch,
    ]);
}

fn wait_vm_ready(s: &Serve) {
    let timeout = format!("--timeout={}s", BOOT.as_secs());
    let o = s.kubectl(&[
        "-n",
        "vmtest",
        "wait",
        "--for=condition=Ready",
        "vm/web",
        &timeout,
    ]);
    assert!(
        o.status.success(),
        "VM not Ready: {}\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(
            &s.kubectl(&["-n", "vmtest", "get", "vm", "web", "-o", "yaml"])
                .stdout
        ),
        String::from_utf8_lossy(&s.kubectl(&["-n", "vmtest", "get", "events"]).stdout),
        s.log()
    );
}

#[test]
fn a_virtual_machine_is_kept_running_and_answers_through_a_service() {
    let test = "a_virtual_machine_is_kept_running_and_answers_through_a_service";
    if skip_unless_tools(test, &["qemu-system-x86_64", "ip", "nft"]) {
        return;
    }
    if skip_without_guest_kernel(test) {
        return;
    }
    let Some(s) = Serve::start(test) else { return };
    let root = s.world.root().to_string_lossy().into_owned();
    s.apply(VM, &[]);

    // Discovery and the schema: `kubectl get vm` and `kubectl explain`.
    let resources = s.ok(&["api-resources", "--api-group=corral.dev"]);
    assert!(
        resources.contains("virtualmachines") && resources.contains("vm,vms"),
        "{resources}"
    );
    let explained = s.ok(&["explain", "vm.spec.runStrategy"]);
    assert!(
        explained.contains("RerunOnFailure") && explained.contains("Halted"),
        "{explained}"
    );

    wait_vm_ready(&s);
    let table = s.ok(&["-n", "vmtest", "get", "vm", "-o", "wide"]);
    assert!(
        table.contains("Running") && table.contains("True"),
        "{table}"
    );
    let ip = vm_field(&s, "{.status.interfaces[0].ipAddress}");
    assert!(table.contains(&ip), "the address is shown: {table}");
    // corral's own view: the same VM, NAME.NAMESPACE.
    let ls = s.world.ok(&["vm", "ls"]);
    assert!(
        ls.contains("web.vmtest") && ls.contains("running") && ls.contains(&ip),
        "{ls}"
    );
    let finalizers = vm_field(&s, "{.metadata.finalizers}");
    assert!(finalizers.contains("corral.dev/vm"), "{finalizers}");

    // Through the Service's virtual IP, from the host.
    let vip = s.jsonpath("vmtest", "svc", "webvm", "{.spec.clusterIP}");
    let vip: SocketAddr = format!("{vip}:80").parse().expect("cluster IP");
    wait_for(
        "the VM through the service",
        Duration::from_secs(30),
        || get(vip).as_deref() == Some("vm-web.vmtest"),
    );
    let slices = s.ok(&["-n", "vmtest", "get", "endpointslices", "-o", "json"]);
    assert!(
        slices.contains("\"VirtualMachine\"") && slices.contains(&ip),
        "the slice names the VM: {slices}"
    );

    // QEMU killed: runStrategy Always starts it again, on the same address.
    let qemus = qemu_processes_of(&root);
    assert_eq!(qemus.len(), 1, "one QEMU: {qemus:?}");
    let _ = std::process::Command::new("kill")
        .args(["-9", &qemus[0].to_string()])
        .status();
    wait_for("a restart", BOOT, || {
        vm_field(&s, "{.status.restartCount}") == "1"
    });
    wait_vm_ready(&s);
    assert_eq!(vm_field(&s, "{.status.interfaces[0].ipAddress}"), ip);
    wait_for("the restarted VM through the service", BOOT, || {
        get(vip).as_deref() == Some("vm-web.vmtest")
    });
    let events = s.ok(&["-n", "vmtest", "get", "events"]);
    assert!(events.contains("Restarted"), "{events}");

    // A clone waits while its source runs.
    s.apply(
        "apiVersion: corral.dev/v1\nkind: VirtualMachineClone\nmetadata: {name: c1, namespace: vmtest}\nspec: {source: {name: web}, target: {name: web2}}\n",
        &[],
    );
    let clone_field = |path: &str| s.jsonpath("vmtest", "vmclone", "c1", path);
    wait_for("the clone pending", Duration::from_secs(30), || {
        clone_field("{.status.phase}") == "Pending"
            && clone_field("{.status.conditions[0].message}")
                .contains("set its runStrategy to Halted")
    });

    // Halted stops it (and the clone goes ahead); Always brings it back, not as a restart.
    set_run_strategy(&s, "web", "Halted");
    wait_for("the VM stopped", Duration::from_secs(60), || {
        vm_field(&s, "{.status.printableStatus}") == "Stopped"
            && qemu_processes_of(&root).is_empty()
    });
    wait_for("the clone made", Duration::from_secs(60), || {
        clone_field("{.status.phase}") == "Succeeded"
    });
    let ls = s.world.ok(&["vm", "ls"]);
    assert!(ls.contains("web2.vmtest"), "the clone's VM: {ls}");
    let labels = s.jsonpath("vmtest", "vm", "web2", "{.metadata.labels.app}");
    assert_eq!(labels, "webvm", "the clone keeps the source's labels");
    set_run_strategy(&s, "web", "Always");
    set_run_strategy(&s, "web2", "Always");
    wait_vm_ready(&s);
    assert_eq!(vm_field(&s, "{.status.restartCount}"), "1");
    let o = s.kubectl(&[
        "-n",
        "vmtest",
        "wait",
        "--for=condition=Ready",
        "vm/web2",
        "--timeout=180s",
    ]);
    assert!(o.status.success(), "clone not Ready: {}", s.log());
    // The clone is a machine of its own: its own address and hostname, behind the same
    // Service as its source.
    let ip2 = s.jsonpath("vmtest", "vm", "web2", "{.status.interfaces[0].ipAddress}");
    assert_ne!(ip2, ip);
    let direct: SocketAddr = format!("{ip2}:8080").parse().unwrap();
    wait_for("the clone's server", BOOT, || {
        get(direct).as_deref() == Some("vm-web2.vmtest")
    });
    wait_for(
        "both VMs behind the service",
        Duration::from_secs(60),
        || {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..20 {
                if let Some(b) = get(vip) {
                    seen.insert(b);
                }
            }
            seen.len() == 2
        },
    );
    // A VM on the pods' network reaches a Service's virtual IP too, as a pod does (here the
    // Service behind which it stands itself).
    // (busybox 1.35's wget crashes on `-T`: no timeout flag.)
    let vip_url = format!("http://{vip}/");
    let mut got = String::new();
    let fetched = (0..60).any(|_| {
        let o = s
            .world
            .cmd(&["vm", "exec", "web2.vmtest", "--", "wget", "-qO-", &vip_url]);
        got = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let ok = got.starts_with("vm-web");
        if !ok {
            std::thread::sleep(Duration::from_millis(500));
        }
        ok
    });
    assert!(fetched, "the service from inside a VM: {got:?}");

    // A snapshot is the engine's snapshot of the VM, and goes with its object.
    let vm_exec = |script: &str| {
        s.world
            .ok(&["vm", "exec", "web.vmtest", "--", "sh", "-c", script])
    };
    vm_exec("echo disk1 > /d");
    s.apply(
        "apiVersion: corral.dev/v1\nkind: VirtualMachineSnapshot\nmetadata: {name: snap1, namespace: vmtest}\nspec: {source: {name: web}}\n",
        &[],
    );
    wait_for("the snapshot", Duration::from_secs(60), || {
        s.jsonpath("vmtest", "vmsnapshot", "snap1", "{.status.readyToUse}") == "true"
    });
    let snaps = s.world.ok(&["vm", "snapshot", "ls", "web.vmtest"]);
    assert!(snaps.contains("snap1"), "{snaps}");

    // A restore of that disk snapshot waits for the VM to stop, then puts the disk back.
    vm_exec("echo disk2 > /d && sync");
    s.apply(
        "apiVersion: corral.dev/v1\nkind: VirtualMachineRestore\nmetadata: {name: r1, namespace: vmtest}\nspec: {target: {apiGroup: corral.dev, kind: VirtualMachine, name: web}, virtualMachineSnapshotName: snap1}\n",
        &[],
    );
    let restore_field = |name: &str, path: &str| s.jsonpath("vmtest", "vmrestore", name, path);
    wait_for("the restore waiting", Duration::from_secs(30), || {
        restore_field("r1", "{.status.conditions[0].message}")
            .contains("set its runStrategy to Halted")
    });
    assert_eq!(restore_field("r1", "{.status.complete}"), "false");
    set_run_strategy(&s, "web", "Halted");
    wait_for("the restore done", Duration::from_secs(120), || {
        restore_field("r1", "{.status.complete}") == "true"
    });
    let table = s.ok(&["-n", "vmtest", "get", "vmrestore"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("r1 ") && l.contains("web") && l.contains("true")),
        "{table}"
    );
    set_run_strategy(&s, "web", "Always");
    wait_vm_ready(&s);
    assert_eq!(
        vm_exec("cat /d").trim(),
        "disk1",
        "the disk as the snapshot took it"
    );
    // Into another VM: refused, and said why.
    s.apply(
        "apiVersion: corral.dev/v1\nkind: VirtualMachineRestore\nmetadata: {name: r2, namespace: vmtest}\nspec: {target: {name: web2}, virtualMachineSnapshotName: snap1}\n",
        &[],
    );
    wait_for("the wrong restore failed", Duration::from_secs(30), || {
        restore_field("r2", "{.status.conditions[?(@.type==\"Failure\")].message}")
            .contains("is of VirtualMachine web, not web2")
    });
    let bad = s.kubectl_in(
        &["create", "-f", "-"],
        r#"{"apiVersion":"corral.dev/v1","kind":"VirtualMachineRestore","metadata":{"name":"r3","namespace":"vmtest"},"spec":{"target":{"name":"web"}}}"#,
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("spec.virtualMachineSnapshotName"),
        "{err}"
    );
    s.ok(&[
        "-n",
        "vmtest",
        "delete",
        "vmsnapshot",
        "snap1",
        "--wait=true",
        "--timeout=60s",
    ]);
    let snaps = s.world.ok(&["vm", "snapshot", "ls", "web.vmtest"]);
    assert!(!snaps.contains("snap1"), "{snaps}");

    // A VM no node can hold: unplaced, and the reason says so.
    s.apply(
        "apiVersion: corral.dev/v1\nkind: VirtualMachine\nmetadata: {name: huge, namespace: vmtest}\nspec: {image: busybox:test, memory: 64Ti}\n",
        &[],
    );
    wait_for("the big VM unschedulable", Duration::from_secs(30), || {
        let out = s.jsonpath(
            "vmtest",
            "vm",
            "huge",
            "{.status.printableStatus} {.status.conditions[0].message}",
        );
        out.starts_with("ErrorUnschedulable") && out.contains("insufficient memory")
    });
    let events = s.ok(&[
        "-n",
        "vmtest",
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=huge",
    ]);
    assert!(events.contains("FailedScheduling"), "{events}");

    // Bad specs: 422 naming the field; unknown fields: 400 under strict validation.
    let bad = s.kubectl_in(
        &["create", "-f", "-"],
        r#"{"apiVersion":"corral.dev/v1","kind":"VirtualMachine","metadata":{"name":"bad","namespace":"vmtest"},"spec":{"image":"busybox:test","runStrategy":"Often"}}"#,
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && err.contains("spec.runStrategy")
            && err.contains("Unsupported value"),
        "{err}"
    );
    let bad = s.kubectl_in(
        &["create", "-f", "-"],
        r#"{"apiVersion":"corral.dev/v1","kind":"VirtualMachine","metadata":{"name":"bad","namespace":"vmtest"},"spec":{}}"#,
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("spec.image"), "{err}");
    let bad = s.kubectl_in(
        &["create", "-f", "-"],
        r#"{"apiVersion":"corral.dev/v1","kind":"VirtualMachine","metadata":{"name":"bad","namespace":"vmtest"},"spec":{"image":"busybox:test","memry":"1Gi"}}"#,
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("unknown field \"spec.memry\""),
        "{err}"
    );
    let gone = s.kubectl(&["-n", "vmtest", "get", "vm", "bad"]);
    assert!(!gone.status.success(), "nothing half-made");
    let bad = s.kubectl_in(
        &["create", "-f", "-"],
        r#"{"apiVersion":"corral.dev/v1","kind":"VirtualMachineSnapshot","metadata":{"name":"bad","namespace":"vmtest"},"spec":{"source":{"name":"a"},"memroy":true}}"#,
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("unknown field \"spec.memroy\""),
        "{err}"
    );

    // Deleting the namespace removes both VMs, their QEMUs and the agent's records.
    s.ok(&[
        "delete",
        "namespace",
        "vmtest",
        "--wait=true",
        "--timeout=120s",
    ]);
    let ls = s.world.ok(&["vm", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "VMs left: {ls}");
    assert!(qemu_processes_of(&root).is_empty(), "QEMU left");
    let records: Vec<_> = std::fs::read_dir(s.world.root().join("kubelet/vms"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "agent records left: {records:?}");
}
