//! End-to-end tests of `corral commit`, `corral diff` and `corral image history`, checked as a
//! docker user checks them: what `diff` lists after a container changed its files, what an
//! image committed from it holds when run (new files, whiteouts, modes, symlinks), the config
//! changes of `-c`, the history entry of `-m`/`-a`, a commit of a running container, dangling
//! commits, and commits of a container in a user namespace.
//!
//! Where corral and docker differ, the tests assert docker's behaviour (Docker Engine 24+).
//! Every test runs the real binary as root in its own world with `busybox:test` imported, and
//! a [`ContainerGuard`] that removes its containers even when it fails.

use std::thread;
use std::time::Duration;

use serde_json::Value;

use corral_e2e::admin::{exec_ok, lines, state, unique_name, wait_for_log, world, EXIT_CORRAL};
use corral_e2e::containers::{run_detached, BUSYBOX_IMAGE};
use corral_e2e::engine::ok_output;
use corral_e2e::world::printed_id;
use corral_e2e::{skip_unless_root, ContainerGuard, Corral};

/// The changes every diff/commit test makes: a new file, a deleted image file, a new directory
/// with files, a mode change, a symlink.
const CHANGES: &str = "echo hello > /f && rm /etc/group && mkdir -p /d/sub && echo x > /d/sub/y \
                       && echo z > /d/z && chmod 600 /etc/passwd && ln -s /f /l";

/// A container `name` that made [`CHANGES`] and exited 0.
fn changed_container(c: &Corral, guard: &mut ContainerGuard<'_>, name: &str) {
    guard.track(name);
    let out = c.cmd(&["run", "--name", name, BUSYBOX_IMAGE, "sh", "-c", CHANGES]);
    ok_output(&format!("corral run --name {name} ... {CHANGES}"), &out);
}

/// `corral run --rm IMAGE CMD...`, panicking unless it exits 0; its stdout.
fn run_image(c: &Corral, image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm", image];
    args.extend_from_slice(cmd);
    ok_output(&format!("corral run --rm {image} {cmd:?}"), &c.cmd(&args))
}

#[test]
fn diff_lists_changes_as_docker_does() {
    if skip_unless_root("diff_lists_changes_as_docker_does") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("diff");
    changed_container(&c, &mut guard, &name);

    let got = lines(&c.ok(&["diff", &name]));
    // docker diff: the changed parent /etc is listed as C; mount points (/proc, /sys, /dev)
    // and the files the runtime bind-mounts (/etc/hosts, /etc/resolv.conf, /etc/hostname)
    // are not.
    let want: Vec<String> = [
        "A /d",
        "A /d/sub",
        "A /d/sub/y",
        "A /d/z",
        "C /etc",
        "D /etc/group",
        "C /etc/passwd",
        "A /f",
        "A /l",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(got, want, "corral diff {name}");

    // A running container with its runtime-written files (/etc/hostname, /etc/hosts) lists
    // only what its process changed.
    let live = unique_name("diff-live");
    run_detached(
        &c,
        &mut guard,
        &live,
        &["--hostname", "h1", "--add-host", "db:10.9.9.9"],
        &[
            "sh",
            "-c",
            "echo a > /new; echo started; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&c, &live, "started");
    assert_eq!(
        lines(&c.ok(&["diff", &live])),
        ["A /new"],
        "corral diff of a running container"
    );
    // Nor does its commit carry the mount point of /etc/hosts into the image.
    let image = format!("{live}:hosts");
    c.ok(&["commit", &live, &image]);
    let got = run_image(
        &c,
        &image,
        &["sh", "-c", "test -e /etc/hosts && echo present; cat /new"],
    );
    assert_eq!(
        lines(&got),
        ["a"],
        "docker leaves /etc/hosts out of the committed layer"
    );
}

#[test]
fn commit_keeps_files_whiteouts_modes_and_symlinks() {
    if skip_unless_root("commit_keeps_files_whiteouts_modes_and_symlinks") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("commit");
    changed_container(&c, &mut guard, &name);
    let image = format!("{name}:v1");
    let id = printed_id(&c.ok(&["commit", &name, &image]));
    assert_eq!(c.inspect(&image).id, id, "commit prints the new image's id");

    let script = "cat /f; cat /d/sub/y /d/z; test -e /etc/group && echo group-present; \
                  stat -c %a /etc/passwd; readlink /l; cat /l";
    let got = run_image(&c, &image, &["sh", "-c", script]);
    assert_eq!(
        lines(&got),
        ["hello", "x", "z", "600", "/f", "hello"],
        "run --rm {image}: content, whiteout of /etc/group, mode 600 and the symlink kept"
    );
    // A container of the new image starts clean: its own diff is empty.
    let second = unique_name("commit-again");
    guard.track(&second);
    c.ok(&["run", "--name", &second, &image, "true"]);
    assert_eq!(
        c.ok(&["diff", &second]).trim(),
        "",
        "diff of a fresh container"
    );
}

#[test]
fn commit_changes_set_config_and_default_command() {
    if skip_unless_root("commit_changes_set_config_and_default_command") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("change");
    changed_container(&c, &mut guard, &name);
    let image = format!("{name}:cfg");
    c.ok(&[
        "commit",
        "-c",
        r#"CMD ["cat","/f"]"#,
        "-c",
        "ENV A=1",
        "-c",
        "LABEL k=v",
        "-c",
        "WORKDIR /srv",
        &name,
        &image,
    ]);

    let text = c.ok(&[
        "inspect",
        "--type",
        "image",
        "-f",
        "{{json .Config}}",
        &image,
    ]);
    let config: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("inspect -f '{{{{json .Config}}}}' not JSON ({e}): {text}"));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["cat", "/f"]),
        "Config.Cmd: {config:#}"
    );
    let env = config["Env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.iter().any(|e| e == "A=1"),
        "Config.Env has A=1: {config:#}"
    );
    assert_eq!(config["Labels"]["k"], "v", "Config.Labels.k: {config:#}");
    assert_eq!(
        config["WorkingDir"], "/srv",
        "Config.WorkingDir: {config:#}"
    );

    assert_eq!(
        run_image(&c, &image, &[]).trim(),
        "hello",
        "the committed CMD runs by default"
    );
    assert_eq!(
        lines(&run_image(&c, &image, &["sh", "-c", "pwd; echo $A"])),
        ["/srv", "1"],
        "WORKDIR and ENV apply"
    );
}

#[test]
fn history_shows_commit_on_top_with_message_and_author() {
    if skip_unless_root("history_shows_commit_on_top_with_message_and_author") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("hist");
    changed_container(&c, &mut guard, &name);
    let image = format!("{name}:h");
    c.ok(&[
        "commit",
        "-a",
        "Jane Doe <jane@example.org>",
        "-m",
        "added f",
        &name,
        &image,
    ]);

    let table = c.ok(&["image", "history", "--no-trunc", &image]);
    let rows = lines(&table);
    assert!(rows.len() >= 3, "header, the commit, the import:\n{table}");
    assert!(
        rows[1].contains("added f"),
        "the commit is the top row, with its comment:\n{table}"
    );

    let text = c.ok(&["image", "history", "--json", &image]);
    let history: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("image history --json not JSON ({e}): {text}"));
    let top = &history[0];
    assert_eq!(
        top["comment"], "added f",
        "history --json, top entry: {history:#}"
    );
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(2),
        "commit over one import layer"
    );

    let author = c.ok(&["inspect", "--type", "image", "-f", "{{.Author}}", &image]);
    assert_eq!(
        author.trim(),
        "Jane Doe <jane@example.org>",
        "docker: .Author of the image"
    );
}

#[test]
fn commit_of_running_container_is_consistent_and_leaves_it_running() {
    if skip_unless_root("commit_of_running_container_is_consistent_and_leaves_it_running") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("live");
    // The writer replaces /data with a complete file by rename, so any consistent snapshot
    // holds either no /data or all of 1..2000; /count grows for as long as it runs.
    let writer = "echo started; i=0; while :; do seq 1 2000 > /tmp/d; mv /tmp/d /data; \
                  i=$((i+1)); echo $i > /count; done";
    run_detached(&c, &mut guard, &name, &[], &["sh", "-c", writer]);
    wait_for_log(&c, &name, "started");
    thread::sleep(Duration::from_millis(300));

    let image = format!("{name}:snap");
    c.ok(&["commit", &name, &image]);
    let got = run_image(&c, &image, &["sh", "-c", "wc -l < /data; tail -n 1 /data"]);
    assert_eq!(
        lines(&got),
        ["2000", "2000"],
        "the committed /data is whole"
    );

    let st = state(&c, &name);
    assert_eq!(
        st["Status"], "running",
        "the container runs on after commit: {st:#}"
    );
    assert_eq!(st["Paused"], false, "not left paused: {st:#}");
    let ps = c.ok(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert!(!ps.contains("Paused"), "ps STATUS: {ps}");
    // `echo $i > /count` truncates before it writes: a read can find it empty; read again.
    let count = || -> u64 {
        (0..20)
            .find_map(|_| {
                let n = exec_ok(&c, &name, &["cat", "/count"]).trim().parse().ok();
                if n.is_none() {
                    thread::sleep(Duration::from_millis(20));
                }
                n
            })
            .unwrap_or(0)
    };
    let before = count();
    thread::sleep(Duration::from_millis(300));
    let after = count();
    assert!(
        after > before,
        "the writer still makes progress ({before} -> {after})"
    );
}

#[test]
fn commit_refuses_run_change() {
    if skip_unless_root("commit_refuses_run_change") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("norun");
    changed_container(&c, &mut guard, &name);
    let before = c.images().len();
    let (code, stderr) = c.fail(&["commit", "-c", "RUN touch /x", &name, "norun:x"]);
    assert_eq!(code, EXIT_CORRAL, "commit -c 'RUN ...': {stderr}");
    assert!(
        stderr.contains("RUN"),
        "the error names the refused instruction: {stderr}"
    );
    assert_eq!(c.images().len(), before, "no image is made");
}

#[test]
fn commit_without_name_makes_dangling_image() {
    if skip_unless_root("commit_without_name_makes_dangling_image") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("dangle");
    changed_container(&c, &mut guard, &name);
    let id = printed_id(&c.ok(&["commit", &name]));
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let dangling = c.ok(&["images", "--filter", "dangling=true", "-q"]);
    assert!(
        dangling.contains(short),
        "images -f dangling=true -q lists {short}:\n{dangling}"
    );
    let named = c.ok(&["images", "--filter", "dangling=false", "-q"]);
    assert!(
        !named.contains(short),
        "dangling=false leaves it out:\n{named}"
    );
    assert_eq!(
        run_image(&c, &id, &["cat", "/f"]).trim(),
        "hello",
        "runnable by id"
    );
}

#[test]
fn commit_of_userns_container_maps_files_to_root() {
    if skip_unless_root("commit_of_userns_container_maps_files_to_root") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("userns");
    guard.track(&name);
    let out = c.cmd(&[
        "run",
        "--name",
        &name,
        "--userns=auto",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo u > /owned && mkdir /od && touch /od/in",
    ]);
    ok_output("corral run --userns=auto", &out);
    let image = format!("{name}:u");
    c.ok(&["commit", &name, &image]);
    let got = run_image(
        &c,
        &image,
        &["stat", "-c", "%u:%g", "/owned", "/od", "/od/in"],
    );
    assert_eq!(
        lines(&got),
        ["0:0", "0:0", "0:0"],
        "files made by container root belong to root in the image, not to the host-side uid"
    );
}
