//! End-to-end tests of what the OCI runtime spec asks of `corral runtime` beyond the
//! lifecycle: hooks, namespaces inherited or joined by path, recursive mount attributes, root
//! propagation, sysctls and the version check — each checked from where the conformance
//! suites check it (the hook's output file, `/proc/self/ns/*` inside, a write that gets EROFS).
//!
//! Every test runs the real binary as root in temp dirs of its own; guards delete what it made.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use corral_e2e::containers::{cgroup_dirs_anywhere, process_alive, wait_until};
use corral_e2e::mounts::TmpfsMount;
use corral_e2e::process::describe;
use corral_e2e::runtime::{stdout_text, Bundle, RuntimeRoot};
use corral_e2e::{path_str, skip_unless_root, test_tempdir, unique_token};

/// A container id unique to this run.
fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}", unique_token())
}

/// Panics unless the container left no state dir and no cgroup behind.
fn assert_gone(rt: &RuntimeRoot, id: &str) {
    assert!(
        !rt.root().join(id).exists(),
        "the state of {id} is still there"
    );
    let cgroups = cgroup_dirs_anywhere(id);
    assert!(cgroups.is_empty(), "cgroups of {id} left: {cgroups:?}");
}

/// `VERB -b BUNDLE` of a new container, which must fail and leave nothing behind; its
/// stderr.
fn refused(rt: &RuntimeRoot, bundle: &Bundle, verb: &str) -> String {
    let id = unique_id("refused");
    let (_, err) = rt.fail(&[verb, "-b", path_str(bundle.path()), &id]);
    assert_gone(rt, &id);
    err
}

/// A hook that appends its name and the state it read on stdin to `log` (one line each), run
/// by the host's shell.
fn logging_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("s=$(cat); printf '%s %s\\n' {name} \"$s\" >> {}", log.display())],
        "env": ["PATH=/usr/bin:/bin"],
        "timeout": 10,
    })
}

/// The link target of `/proc/PID/ns/KIND` (`ipc:[4026531839]`).
fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
}

#[test]
fn hooks_run_in_order_with_the_container_state() {
    if skip_unless_root("hooks_run_in_order_with_the_container_state") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sh", "-c", "echo program >> /hooks.log"]);
    let log = bundle.path().join("rootfs/hooks.log");
    fs::write(&log, "").unwrap();
    bundle.edit_config(|c| {
        c["annotations"] = json!({"org.example.test": "hooks"});
        c["hooks"] = json!({
            "prestart": [logging_hook("prestart", &log)],
            "createRuntime": [logging_hook("createRuntime", &log)],
            "createContainer": [logging_hook("createContainer", &log)],
            // Inside the container, after pivot_root: its own shell and its own path.
            "startContainer": [{
                "path": "/bin/busybox",
                "args": ["sh", "-c", "s=$(cat); printf 'startContainer %s\\n' \"$s\" >> /hooks.log"],
            }],
            "poststart": [logging_hook("poststart", &log)],
            "poststop": [logging_hook("poststop", &log)],
        });
    });
    let id = unique_id("hooks");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let pid = rt.state(&id)["pid"].as_i64().expect("pid after create");
    let after_create = fs::read_to_string(&log).unwrap();
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split(' ').next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        names(&after_create),
        ["prestart", "createRuntime", "createContainer"],
        "hooks run by create:\n{after_create}"
    );
    rt.ok(&["start", &id]);
    wait_until(
        Duration::from_secs(15),
        "the program to run and the container to stop",
        || rt.state(&id)["status"] == "stopped",
    );
    rt.ok(&["delete", &id]);
    assert_gone(&rt, &id);
    let text = fs::read_to_string(&log).unwrap();
    // poststart and the program race (the program is released first): both ran, and every
    // other hook is in its place.
    for needed in ["startContainer", "program", "poststart", "poststop"] {
        assert!(
            names(&text).iter().any(|n| n == needed),
            "{needed} missing:\n{text}"
        );
    }
    let order: Vec<String> = names(&text)
        .into_iter()
        .filter(|n| n != "poststart")
        .collect();
    assert_eq!(
        order,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "program",
            "poststop"
        ],
        "{text}"
    );
    let bundle_dir = fs::canonicalize(bundle.path()).unwrap();
    for line in text.lines().filter(|l| !l.starts_with("program")) {
        let (name, state) = line.split_once(' ').unwrap();
        let state: Value = serde_json::from_str(state)
            .unwrap_or_else(|e| panic!("{name} read no state JSON ({e}): {line}"));
        assert_eq!(state["id"], id.as_str(), "{name}: {state}");
        assert_eq!(state["bundle"], path_str(&bundle_dir), "{name}: {state}");
        assert_eq!(state["annotations"]["org.example.test"], "hooks", "{name}");
        let want = match name {
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "created",
        };
        assert_eq!(state["status"], want, "{name}: {state}");
        if name != "poststop" {
            assert_eq!(state["pid"], pid, "{name} was told another pid: {state}");
        }
    }
}

#[test]
fn a_failing_or_hanging_create_hook_fails_create_and_leaves_nothing() {
    if skip_unless_root("a_failing_or_hanging_create_hook_fails_create_and_leaves_nothing") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "true"]);
    for (kind, hook, want) in [
        (
            "prestart",
            json!({"path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 7"]}),
            "no network for you",
        ),
        (
            "createContainer",
            json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}),
            "exit status: 3",
        ),
        (
            "createRuntime",
            json!({"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1}),
            "timeout of 1 s",
        ),
        (
            "prestart",
            json!({"path": "/nonexistent/hook"}),
            "/nonexistent/hook",
        ),
    ] {
        bundle.edit_config(|c| c["hooks"] = json!({ kind: [hook] }));
        let id = unique_id("hookfail");
        let t0 = Instant::now();
        let (code, err) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
        assert!(
            code != 0 && err.contains(want),
            "{kind}: exit {code}: {err}"
        );
        assert!(
            err.contains(kind),
            "the error names the hook point {kind}: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{kind} took {:?}",
            t0.elapsed()
        );
        assert_gone(&rt, &id);
    }
    // A failing poststop is a warning: delete still deletes.
    bundle.edit_config(|c| {
        c["hooks"] = json!({"poststop": [{"path": "/bin/false", "args": ["false"]}]})
    });
    let id = unique_id("poststop");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let out = rt.cmd(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("poststop hook /bin/false"),
        "the failing poststop is reported: {}",
        describe(&out)
    );
    assert_gone(&rt, &id);
    // A relative hook path is refused before anything starts.
    bundle.edit_config(|c| c["hooks"] = json!({"poststart": [{"path": "bin/true"}]}));
    let err = refused(&rt, &bundle, "create");
    assert!(err.contains("must be absolute"), "{err}");
}

#[test]
fn namespaces_the_spec_omits_are_the_callers() {
    if skip_unless_root("namespaces_the_spec_omits_are_the_callers") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "for n in pid ipc uts cgroup net mnt; do echo $n $(/bin/busybox readlink /proc/self/ns/$n); done",
    ]);
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let id = unique_id("inherit");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    for kind in ["pid", "ipc", "uts", "cgroup", "net"] {
        let line = format!("{kind} {}", ns_of("self", kind));
        assert!(
            text.lines().any(|l| l == line),
            "{kind} is not the caller's ({line}):\n{text}"
        );
    }
    let mnt = format!("mnt {}", ns_of("self", "mnt"));
    assert!(
        !text.contains(&mnt),
        "the listed mount namespace is new:\n{text}"
    );
    assert_gone(&rt, &id);

    // No namespace at all, the mount namespace too: the root is bound on itself in the
    // caller's namespace (runc's way), and unbound by delete.
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = json!([]);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let id = unique_id("inherit-all");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    let mnt = format!("mnt {}", ns_of("self", "mnt"));
    assert!(
        text.lines().any(|l| l == mnt),
        "not the caller's mount namespace:\n{text}"
    );
    assert_gone(&rt, &id);
    let root = fs::canonicalize(bundle.path().join("rootfs")).unwrap();
    let left: Vec<_> = corral_e2e::mounts::mounts_under(&root);
    assert!(
        left.is_empty(),
        "mounts left in the host's namespace: {left:?}"
    );
    // Masked paths cannot be honoured there: refused, not ignored.
    bundle.edit_config(|c| c["linux"]["maskedPaths"] = json!(["/proc/kcore"]));
    let err = refused(&rt, &bundle, "run");
    assert!(err.contains("mount namespace"), "{err}");
    let left: Vec<_> = corral_e2e::mounts::mounts_under(&root);
    assert!(
        left.is_empty(),
        "mounts left after a refused create: {left:?}"
    );
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}]);
        c["linux"]["maskedPaths"] = json!([]);
    });

    // A hostname without a UTS namespace would rename the host: refused.
    bundle.edit_config(|c| c["hostname"] = json!("renamed"));
    let err = refused(&rt, &bundle, "run");
    assert!(err.contains("uts"), "{err}");
}

/// A process of its own namespaces (`unshare`), stopped on drop.
struct Holder(Child);

impl Holder {
    fn new(flags: &[&str]) -> Self {
        let child = Command::new("unshare")
            .args(flags)
            .args(["--fork", "--kill-child", "sleep", "120"])
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare");
        let h = Holder(child);
        // The sleep, once unshare forked it.
        wait_until(Duration::from_secs(10), "unshare's child", || {
            h.pid().is_some()
        });
        h
    }

    /// The pid of the process inside the namespaces.
    fn pid(&self) -> Option<String> {
        let children =
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.0.id())).ok()?;
        children.split_whitespace().next().map(str::to_owned)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn namespaces_named_by_path_are_joined() {
    if skip_unless_root("namespaces_named_by_path_are_joined") {
        return;
    }
    let holder = Holder::new(&["--pid", "--mount", "--ipc", "--uts", "--net"]);
    let hp = holder.pid().unwrap();
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "for n in pid mnt ipc uts net; do echo $n $(/bin/busybox readlink /proc/self/ns/$n); done",
    ]);
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = json!([
            {"type": "pid", "path": format!("/proc/{hp}/ns/pid")},
            {"type": "mount", "path": format!("/proc/{hp}/ns/mnt")},
            {"type": "ipc", "path": format!("/proc/{hp}/ns/ipc")},
            {"type": "uts", "path": format!("/proc/{hp}/ns/uts")},
            {"type": "network", "path": format!("/proc/{hp}/ns/net")},
            {"type": "cgroup"},
        ]);
    });
    let id = unique_id("join");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    for kind in ["pid", "mnt", "ipc", "uts", "net"] {
        let line = format!("{kind} {}", ns_of(&hp, kind));
        assert!(
            text.lines().any(|l| l == line),
            "{kind} of the holder not joined ({line}):\n{text}"
        );
    }
    assert_gone(&rt, &id);
    assert!(process_alive(hp.parse().unwrap()), "the holder survived");
}

#[test]
fn recursive_mount_attributes_reach_every_submount() {
    if skip_unless_root("recursive_mount_attributes_reach_every_submount") {
        return;
    }
    // A host tree with a mount inside it: `rbind,rro` must make both read-only, where `ro`
    // would only reach the top.
    let host = test_tempdir("rro");
    fs::write(host.path().join("top"), "t").unwrap();
    let sub = TmpfsMount::new(&host.path().join("sub"), "1m");
    fs::write(sub.path().join("inner"), "i").unwrap();
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "for f in /data/top /data/sub/inner /ro/top /ro/sub/inner; do \
           if echo x >> $f 2>/dev/null; then echo $f writable; else echo $f refused; fi; done; \
         /data/sub/run-me && echo exec ran || echo exec refused",
    ]);
    fs::write(sub.path().join("run-me"), "#!/bin/busybox sh\nexit 0\n").unwrap();
    Command::new("chmod")
        .args(["755", path_str(&sub.path().join("run-me"))])
        .status()
        .unwrap();
    bundle.edit_config(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/data", "type": "bind", "source": path_str(host.path()),
            "options": ["rbind", "rro", "rnoexec"]}),
        );
        mounts.push(
            json!({"destination": "/ro", "type": "bind", "source": path_str(host.path()),
            "options": ["rbind", "ro"]}),
        );
    });
    let id = unique_id("rro");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    for want in [
        "/data/top refused",
        "/data/sub/inner refused",
        "/ro/top refused",
        // Plain `ro` stops at the top mount, as the kernel has it: what rro is for.
        "/ro/sub/inner writable",
        "exec refused",
    ] {
        assert!(text.lines().any(|l| l == want), "{want}:\n{text}");
    }
    assert_gone(&rt, &id);
    assert_eq!(fs::read_to_string(host.path().join("top")).unwrap(), "t");

    // An unknown recursive option is not silently dropped.
    bundle.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().pop();
        c["mounts"].as_array_mut().unwrap().pop();
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data", "type": "tmpfs",
            "source": "tmpfs", "options": ["rnoexec", "size=1m"]}));
        c["process"]["args"] = json!([
            "/bin/busybox",
            "sh",
            "-c",
            "grep ' /data ' /proc/self/mounts"
        ]);
    });
    let id = unique_id("rtmpfs");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout_text(&out).contains("noexec"), "{}", describe(&out));
    drop(sub);
}

#[test]
fn root_propagation_unbindable_refuses_a_bind_of_root() {
    if skip_unless_root("root_propagation_unbindable_refuses_a_bind_of_root") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "mkdir -p /target; if /bin/busybox mount --bind / /target 2>/dev/null; then echo bound; else echo refused; fi; \
         /bin/busybox awk '$5 == \"/\"' /proc/self/mountinfo",
    ]);
    bundle.edit_config(|c| {
        c["linux"]["rootfsPropagation"] = json!("unbindable");
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
        c["process"]["capabilities"]["effective"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
        c["process"]["capabilities"]["permitted"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    });
    let id = unique_id("unbindable");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    assert!(
        text.starts_with("refused"),
        "a bind of / was allowed:\n{text}"
    );
    assert!(text.contains("unbindable"), "mountinfo of /:\n{text}");
    assert_gone(&rt, &id);

    bundle.edit_config(|c| c["linux"]["rootfsPropagation"] = json!("sideways"));
    let err = refused(&rt, &bundle, "run");
    assert!(err.contains("rootfsPropagation"), "{err}");
}

#[test]
fn sysctls_of_owned_namespaces_are_set_and_others_refused() {
    if skip_unless_root("sysctls_of_owned_namespaces_are_set_and_others_refused") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
    ]);
    bundle.edit_config(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    });
    let id = unique_id("sysctl");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout_text(&out).split_whitespace().collect::<Vec<_>>(),
        ["1", "1234"]
    );
    assert_gone(&rt, &id);
    for (key, why) in [
        ("kernel.panic", "not in a namespace"),
        ("net.ipv4.ip_forward", ""),
    ] {
        bundle.edit_config(|c| {
            c["linux"]["sysctl"] = json!({ key: "1" });
            if key.starts_with("net.") {
                // The host's network namespace: its parameters are the host's.
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "network");
            }
        });
        let err = refused(&rt, &bundle, "run");
        assert!(err.contains(key) && err.contains(why), "{err}");
    }
}

#[test]
fn an_invalid_oci_version_is_refused() {
    if skip_unless_root("an_invalid_oci_version_is_refused") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "true"]);
    for bad in ["invalid", "2.0.0", "1.0"] {
        bundle.edit_config(|c| c["ociVersion"] = json!(bad));
        let err = refused(&rt, &bundle, "create");
        assert!(err.contains("ociVersion"), "{bad}: {err}");
    }
    bundle.edit_config(|c| c["ociVersion"] = json!("1.1.0-rc.1"));
    let id = unique_id("version-ok");
    rt.ok(&["run", "-b", path_str(bundle.path()), &id]);
    assert_gone(&rt, &id);
}

#[test]
fn errors_use_the_wording_tools_match_on() {
    if skip_unless_root("errors_use_the_wording_tools_match_on") {
        return;
    }
    let rt = RuntimeRoot::new();
    for verb in [&["state"][..], &["kill"], &["delete"], &["start"]] {
        let mut args = verb.to_vec();
        args.push("no-such-container");
        let (code, err) = rt.fail(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("error") && err.contains("container no-such-container does not exist"),
            "{args:?}: {err}"
        );
    }
    // An image whose /proc is a symlink gets no procfs mounted through it.
    let bundle = Bundle::busybox(&["/bin/busybox", "true"]);
    let proc_dir = bundle.path().join("rootfs/proc");
    let _ = fs::remove_dir(&proc_dir);
    std::os::unix::fs::symlink("/tmp", &proc_dir).unwrap();
    let err = refused(&rt, &bundle, "run");
    assert!(
        err.contains("must be mounted on ordinary directory"),
        "{err}"
    );
    assert!(
        fs::read_dir(bundle.path().join("rootfs/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "something was mounted or made through the symlink"
    );
}

#[test]
fn create_reports_a_missing_program_and_the_umask_is_applied() {
    if skip_unless_root("create_reports_a_missing_program_and_the_umask_is_applied") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/no/such/program"]);
    for (args, want) in [
        (json!(["/no/such/program"]), "no such file"),
        (
            json!(["no-such-program"]),
            "executable file not found in $PATH",
        ),
    ] {
        bundle.edit_config(|c| c["process"]["args"] = args.clone());
        let err = refused(&rt, &bundle, "create");
        assert!(err.contains(want), "{args}: {err}");
    }
    // A spec without /proc fails create, saying so (runc fails it too).
    let mounts = fs::read_to_string(bundle.config_path()).unwrap();
    bundle.edit_config(|c| {
        c["process"]["args"] = json!(["/bin/busybox", "sh", "-c", "umask"]);
        c["process"]["user"]["umask"] = json!(0o027);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/proc");
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let err = refused(&rt, &bundle, "create");
    assert!(err.contains("no /proc"), "{err}");
    let original: Value = serde_json::from_str(&mounts).unwrap();
    bundle.edit_config(|c| c["mounts"] = original["mounts"].clone());
    let id = unique_id("umask");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout_text(&out).trim(), "0027");
    assert_gone(&rt, &id);
}

/// The v1 memory directory of a created container, if this host has v1 hierarchies.
fn v1_dir(controller: &str, id: &str) -> Option<std::path::PathBuf> {
    cgroup_dirs_anywhere(id)
        .into_iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}")))
}

#[test]
fn memory_and_block_io_settings_reach_the_cgroup_or_are_refused() {
    if skip_unless_root("memory_and_block_io_settings_reach_the_cgroup_or_are_refused") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory").is_dir() {
        corral_e2e::report_skip(
            "memory_and_block_io_settings_reach_the_cgroup_or_are_refused",
            "this host has no cgroup v1 memory hierarchy (the v1 files are what is checked)",
        );
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sleep", "30"]);
    let swap = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    bundle.edit_config(|c| {
        c["linux"]["resources"]["memory"] = json!({
            "limit": 64 << 20, "reservation": 32 << 20, "swappiness": 7,
            "disableOOMKiller": true,
        });
        if swap {
            c["linux"]["resources"]["memory"]["swap"] = json!(96 << 20);
        }
        c["linux"]["resources"]["blockIO"] = json!({
            "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1048576}],
        });
    });
    let id = unique_id("memory");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let mem = v1_dir("memory", &id).expect("a memory cgroup");
    let read = |d: &Path, f: &str| fs::read_to_string(d.join(f)).unwrap().trim().to_owned();
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read(&mem, "memory.swappiness"), "7");
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    if swap {
        assert_eq!(
            read(&mem, "memory.memsw.limit_in_bytes"),
            (96u64 << 20).to_string()
        );
    }
    let blkio = v1_dir("blkio", &id).expect("a blkio cgroup");
    assert_eq!(
        read(&blkio, "blkio.throttle.read_bps_device"),
        "7:0 1048576"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);

    // What this host has no controller for is refused, naming it, and leaves nothing.
    for (what, resources) in [
        ("net_cls", json!({"network": {"classID": 1048577}})),
        (
            "hugetlb",
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
        ),
        ("swappiness", json!({"memory": {"swappiness": 1000}})),
    ] {
        bundle.edit_config(|c| c["linux"]["resources"] = resources.clone());
        let id = unique_id("refused");
        let (_, err) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
        let host_has = Path::new(&format!("/sys/fs/cgroup/{what}")).is_dir();
        if !host_has || what == "swappiness" {
            assert!(err.contains(what), "{what}: {err}");
        }
        assert_gone(&rt, &id);
    }
}

/// A seccomp agent: listens at a socket, takes one message and its descriptors, prints the
/// JSON, what each descriptor is, and closes them (the notified calls then fail with ENOSYS).
const AGENT: &str = r#"
import array, json, os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
msg, anc, _, _ = c.recvmsg(65536, socket.CMSG_LEN(16))
fds = array.array("i")
for level, typ, data in anc:
    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
print(json.dumps({"msg": json.loads(msg), "fds": [os.readlink("/proc/self/fd/%d" % f) for f in fds]}), flush=True)
for f in fds:
    os.close(f)
"#;

#[test]
fn seccomp_notify_hands_the_listener_to_the_agent() {
    if skip_unless_root("seccomp_notify_hands_the_listener_to_the_agent")
        || corral_e2e::skip_unless_tools(
            "seccomp_notify_hands_the_listener_to_the_agent",
            &["python3"],
        )
    {
        return;
    }
    let dir = test_tempdir("agent");
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new("python3")
        .args(["-c", AGENT, path_str(&socket)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(agent.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening");

    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox mkdir /made 2>&1; echo mkdir=$?",
    ]);
    bundle.edit_config(|c| {
        c["annotations"] = json!({"org.example": "notify"});
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": path_str(&socket),
            "listenerMetadata": "opaque-metadata",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
        });
    });
    let id = unique_id("notify");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let mut got = String::new();
    std::io::BufRead::read_line(&mut out, &mut got).unwrap();
    let got: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
    let _ = agent.wait();
    assert_eq!(got["msg"]["fds"], json!(["seccompFd"]), "{got}");
    assert_eq!(got["msg"]["pid"], pid, "{got}");
    assert_eq!(got["msg"]["metadata"], "opaque-metadata", "{got}");
    assert_eq!(got["msg"]["state"]["id"], id.as_str(), "{got}");
    assert_eq!(got["msg"]["state"]["annotations"]["org.example"], "notify");
    assert_eq!(
        got["fds"],
        json!(["anon_inode:seccomp notify"]),
        "the descriptor is a seccomp listener: {got}"
    );
    rt.ok(&["start", &id]);
    wait_until(Duration::from_secs(15), "the program to end", || {
        rt.state(&id)["status"] == "stopped"
    });
    rt.ok(&["delete", &id]);
    assert_gone(&rt, &id);
    assert!(
        !bundle.path().join("rootfs/made").exists(),
        "mkdir went through although it was to be notified and the agent had gone"
    );

    // SCMP_ACT_TRACE without a tracer: the call fails with ENOSYS, as the kernel has it.
    bundle.edit_config(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}],
        });
    });
    let id = unique_id("trace");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    assert!(
        text.contains("Function not implemented") && text.contains("mkdir=1"),
        "mkdir under SCMP_ACT_TRACE without a tracer: {text}"
    );
    assert!(!bundle.path().join("rootfs/made").exists());
    assert_gone(&rt, &id);

    // NOTIFY without a listener, or as the default action: refused at create.
    for seccomp in [
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/tmp/x"}),
    ] {
        bundle.edit_config(|c| c["linux"]["seccomp"] = seccomp.clone());
        let err = refused(&rt, &bundle, "create");
        assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
    }
}

#[test]
fn process_attributes_and_the_time_namespace_are_applied() {
    if skip_unless_root("process_attributes_and_the_time_namespace_are_applied") {
        return;
    }
    if !Path::new("/proc/self/ns/time").exists() {
        corral_e2e::report_skip(
            "process_attributes_and_the_time_namespace_are_applied",
            "this kernel has no time namespaces (Linux 5.6+)",
        );
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox uname -m; cat /proc/sys/kernel/domainname; /bin/busybox ionice -p $$; \
         grep -E '^policy' /proc/self/sched; cat /proc/self/timens_offsets; \
         /bin/busybox head -n 1 /proc/self/numa_maps",
    ]);
    bundle.edit_config(|c| {
        c["domainname"] = json!("corral.test");
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH"});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
        c["linux"]["timeOffsets"] = json!({
            "monotonic": {"secs": 86400, "nanosecs": 0},
            "boottime": {"secs": 3600, "nanosecs": 7},
        });
    });
    let id = unique_id("attrs");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"i686"), "personality LINUX32:\n{text}");
    assert!(lines.contains(&"corral.test"), "domainname:\n{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("idle")),
        "ionice:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("policy") && l.ends_with(" 3")),
        "SCHED_BATCH (3):\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["monotonic", "86400", "0"]),
        "the time namespace's offsets:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["boottime", "3600", "7"]),
        "the time namespace's offsets:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some("bind:0")),
        "memory policy MPOL_BIND of node 0 in numa_maps:\n{text}"
    );
    assert_gone(&rt, &id);

    // What this host cannot honour is refused, not ignored.
    let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y");
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let mut unsupported = vec![
        (
            "linux.personality",
            json!({"linux": {"personality": {"domain": "PER_BSD"}}}),
        ),
        (
            "ioPriority",
            json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_NONE"}}}),
        ),
        (
            "timeOffsets",
            json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1}}}}),
        ),
        (
            "memoryPolicy",
            json!({"linux": {"memoryPolicy": {"mode": "INTERLEAVE", "nodes": "0"}}}),
        ),
        (
            "memoryPolicy",
            json!({"linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0-9876543210"}}}),
        ),
    ];
    if !apparmor {
        unsupported.push((
            "AppArmor",
            json!({"process": {"apparmorProfile": "docker-default"}}),
        ));
    }
    if !selinux {
        unsupported.push((
            "SELinux",
            json!({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}),
        ));
    }
    let original: Value =
        serde_json::from_str(&fs::read_to_string(bundle.config_path()).unwrap()).unwrap();
    for (what, patch) in unsupported {
        bundle.edit_config(|c| {
            *c = original.clone();
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "time");
            c["linux"].as_object_mut().unwrap().remove("timeOffsets");
            c["linux"].as_object_mut().unwrap().remove("memoryPolicy");
            for (section, fields) in patch.as_object().unwrap() {
                for (k, v) in fields.as_object().unwrap() {
                    c[section][k] = v.clone();
                }
            }
        });
        let err = refused(&rt, &bundle, "create");
        assert!(err.contains(what), "{what}: {err}");
    }
}

#[test]
fn exec_cgroup_runs_in_a_sub_cgroup_and_delete_removes_it() {
    if skip_unless_root("exec_cgroup_runs_in_a_sub_cgroup_and_delete_removes_it") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sleep", "60"]);
    let id = unique_id("exec-cgroup");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    rt.ok(&["start", &id]);
    let dirs = cgroup_dirs_anywhere(&id);
    assert!(!dirs.is_empty(), "no cgroup for {id}");
    for d in &dirs {
        fs::create_dir(d.join("sub")).unwrap_or_else(|e| panic!("mkdir {}/sub: {e}", d.display()));
        // A new v1 cpuset admits no task until it has CPUs and memory nodes.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = fs::read_to_string(d.join(f)) {
                fs::write(d.join("sub").join(f), v.trim()).unwrap();
            }
        }
    }
    let text = rt.ok(&[
        "exec",
        "--cgroup",
        "sub",
        &id,
        "/bin/busybox",
        "cat",
        "/proc/self/cgroup",
    ]);
    // Seen through the container's cgroup namespace, its cgroup is `/`.
    let own: Vec<&str> = text
        .lines()
        .filter(|l| {
            let v2 = !Path::new("/sys/fs/cgroup/memory").is_dir();
            l.contains(":memory:") || l.contains(":pids:") || (v2 && l.starts_with("0::"))
        })
        .collect();
    assert!(
        !own.is_empty() && own.iter().all(|l| l.ends_with("/sub")),
        "exec --cgroup sub: every hierarchy of the container in sub:\n{text}"
    );
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        // v1: a controller list limits it to those hierarchies.
        let text = rt.ok(&[
            "exec",
            "--cgroup",
            "memory:sub",
            &id,
            "/bin/busybox",
            "cat",
            "/proc/self/cgroup",
        ]);
        let mem = text
            .lines()
            .find(|l| l.contains(":memory:"))
            .unwrap_or_default();
        let pids = text
            .lines()
            .find(|l| l.contains(":pids:"))
            .unwrap_or_default();
        assert!(mem.ends_with(":/sub") && pids.ends_with(":/"), "{text}");
    }
    for bad in ["missing", "../escape"] {
        let (_, err) = rt.fail(&["exec", "--cgroup", bad, &id, "/bin/busybox", "true"]);
        assert!(err.contains("--cgroup"), "{bad}: {err}");
    }
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn unimplemented_spec_fields_are_refused_and_no_capabilities_means_none() {
    if skip_unless_root("unimplemented_spec_fields_are_refused_and_no_capabilities_means_none") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "grep",
        "-E",
        "^Cap(Prm|Eff|Bnd)",
        "/proc/self/status",
    ]);
    // No process.capabilities: the process gets none (runc's reading), not a default set.
    bundle.edit_config(|c| {
        c["process"].as_object_mut().unwrap().remove("capabilities");
    });
    let id = unique_id("nocaps");
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_text(&out);
    for line in text.lines() {
        assert!(
            line.ends_with("0000000000000000"),
            "no capabilities asked, some given: {text}"
        );
    }
    assert_gone(&rt, &id);
    for (field, value) in [
        ("netDevices", json!({"eth1": {}})),
        ("intelRdt", json!({"closID": "x"})),
    ] {
        bundle.edit_config(|c| c["linux"][field] = value.clone());
        let err = refused(&rt, &bundle, "create");
        assert!(
            err.contains(field) && err.contains("not supported"),
            "{field}: {err}"
        );
        bundle.edit_config(|c| {
            c["linux"].as_object_mut().unwrap().remove(field);
        });
    }
}
