//! End-to-end tests of corral's admin verbs and late `run` flags, checked as a docker user
//! checks them: `update` of a running container's limits (seen inside through its cgroup and
//! in `inspect`), `attach`, `system df` and `system prune`, `images` filters and formats,
//! `network ls` filters, shell completion and man pages, and `run --replace`, `--shm-size`,
//! `--oom-score-adj`, `--cpu-quota`, `--ipc host`, `--uts host`, `--security-opt mask|unmask`.
//!
//! Where corral and docker differ, the tests assert docker's behaviour (Docker Engine 24+).
//! The host has cgroup v1; a container sees its own cgroup under `/sys/fs/cgroup/<ctl>/`.
//! Every test runs the real binary as root in its own world with `busybox:test` imported,
//! with guards that remove its containers, volumes and networks even when it fails.

use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use corral_e2e::admin::{
    exec_ok, lines, stdout_of, unique_name, wait_for_log, wait_status, world, EXIT_CORRAL,
    UNTIL_TERM,
};
use corral_e2e::containers::{cgroup_dirs, run_detached, run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::engine::VolumeGuard;
use corral_e2e::networks::NetworkGuard;
use corral_e2e::process::run_ok;
use corral_e2e::{path_str, skip_unless_root, skip_unless_tools, ContainerGuard, Corral};

/// A detached busybox container running [`UNTIL_TERM`] with `flags`, its first line logged.
fn looping(c: &Corral, guard: &mut ContainerGuard<'_>, name: &str, flags: &[&str]) -> String {
    let id = run_detached(c, guard, name, flags, &["sh", "-c", UNTIL_TERM]);
    wait_for_log(c, name, "started");
    id
}

fn memory_limit_inside(c: &Corral, name: &str) -> String {
    exec_ok(
        c,
        name,
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
    )
}

fn inspect_field(c: &Corral, name: &str, template: &str) -> String {
    c.ok(&["inspect", "-f", template, name]).trim().to_owned()
}

/// The set of non-empty lines `corral ARGS...` prints.
fn line_set(c: &Corral, args: &[&str]) -> BTreeSet<String> {
    lines(&c.ok(args)).into_iter().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `network inspect NAME`, parsed (an object, or docker's array of one).
fn network_json(c: &Corral, name: &str) -> Value {
    let text = c.ok(&["network", "inspect", name]);
    match serde_json::from_str(text.trim()) {
        Ok(Value::Array(mut items)) if items.len() == 1 => items.swap_remove(0),
        Ok(v) => v,
        Err(e) => panic!("network inspect {name} not JSON ({e}): {text}"),
    }
}

// ---------------------------------------------------------------------------------------------
// update

#[test]
fn update_memory_applies_inside_and_survives_restart() {
    if skip_unless_root("update_memory_applies_inside_and_survives_restart") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("upd-mem");
    looping(&c, &mut guard, &name, &[]);

    c.ok(&["update", "-m", "128m", &name]);
    assert_eq!(
        memory_limit_inside(&c, &name),
        "134217728",
        "limit seen inside after -m 128m"
    );
    assert_eq!(
        inspect_field(&c, &name, "{{.HostConfig.Memory}}"),
        "134217728"
    );

    c.ok(&["update", "-m", "32m", &name]);
    assert_eq!(memory_limit_inside(&c, &name), "33554432", "lowered to 32m");
    assert_eq!(
        inspect_field(&c, &name, "{{.HostConfig.Memory}}"),
        "33554432"
    );

    c.ok(&["stop", &name]);
    c.ok(&["start", &name]);
    wait_status(&c, &name, "running");
    assert_eq!(
        memory_limit_inside(&c, &name),
        "33554432",
        "the updated limit stays after stop+start"
    );
}

#[test]
fn update_pids_limit_holds_back_fork_loop() {
    if skip_unless_root("update_pids_limit_holds_back_fork_loop") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("upd-pids");
    let id = looping(&c, &mut guard, &name, &[]);
    c.ok(&["update", "--pids-limit", "20", &name]);
    assert_eq!(
        exec_ok(&c, &name, &["cat", "/sys/fs/cgroup/pids/pids.max"]),
        "20"
    );
    assert_eq!(inspect_field(&c, &name, "{{.HostConfig.PidsLimit}}"), "20");

    // Try to start 40 sleepers: the shell dies at the first refused fork (busybox ash), and
    // at most 20 tasks may live in the container's cgroup, as the host sees it.
    let _ = c.cmd(&[
        "exec",
        &name,
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 30 >/dev/null 2>&1 & done",
    ]);
    let pids_dir = cgroup_dirs(&id)
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids"))
        .unwrap_or_else(|| panic!("no pids cgroup for {id}: {:?}", cgroup_dirs(&id)));
    let current = fs::read_to_string(pids_dir.join("pids.current")).expect("pids.current");
    let current: u32 = current.trim().parse().expect("pids.current is a number");
    assert!(current <= 20, "pids.current {current} > limit 20");
    assert!(current >= 15, "the fork loop did run ({current} tasks)");
}

#[test]
fn update_restart_always_on_rm_container_fails() {
    if skip_unless_root("update_restart_always_on_rm_container_fails") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("upd-rm");
    looping(&c, &mut guard, &name, &["--rm"]);
    c.fail_125(&["update", "--restart", "always", &name]);
    let policy = inspect_field(&c, &name, "{{.HostConfig.RestartPolicy.Name}}");
    assert_ne!(policy, "always", "the refused policy was not stored");
}

// ---------------------------------------------------------------------------------------------
// attach

#[test]
fn attach_follows_output_and_exits_with_code() {
    if skip_unless_root("attach_follows_output_and_exits_with_code") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("attach");
    run_detached(
        &c,
        &mut guard,
        &name,
        &[],
        &["sh", "-c", "sleep 0.5; echo late; exit 3"],
    );
    let out = c.cmd(&["attach", &name]);
    assert!(
        stdout_of(&out).contains("late"),
        "attach shows later output: {out:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "attach exits with the container's code: {out:?}"
    );
}

#[test]
fn attach_to_exited_container_fails() {
    if skip_unless_root("attach_to_exited_container_fails") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("attach-exited");
    guard.track(&name);
    c.ok(&["run", "--name", &name, BUSYBOX_IMAGE, "true"]);
    c.fail_125(&["attach", &name]);
}

// ---------------------------------------------------------------------------------------------
// system df / prune

/// `system df --json`, as type -> (total, active).
fn df_totals(c: &Corral) -> Vec<(String, u64, u64)> {
    let text = c.ok(&["system", "df", "--json"]);
    let value: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("system df --json not JSON ({e}): {text}"));
    value
        .as_array()
        .unwrap_or_else(|| panic!("system df --json is not an array: {text}"))
        .iter()
        .map(|row| {
            (
                row["type"].as_str().unwrap_or_default().to_owned(),
                row["total"].as_u64().unwrap_or(u64::MAX),
                row["active"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[test]
fn system_df_totals_match_what_exists() {
    if skip_unless_root("system_df_totals_match_what_exists") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let mut volumes = VolumeGuard::new(&c);
    let used = unique_name("df-used");
    let free = unique_name("df-free");
    for v in [&used, &free] {
        volumes.track(v);
        c.ok(&["volume", "create", v]);
    }
    let exited = unique_name("df-exited");
    guard.track(&exited);
    c.ok(&[
        "run",
        "--name",
        &exited,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo x > /f",
    ]);
    c.ok(&["commit", &exited, "df-extra:1"]);
    looping(
        &c,
        &mut guard,
        &unique_name("df-running"),
        &["-v", &format!("{used}:/data")],
    );

    let want = vec![
        ("Images".to_owned(), 2, 1),
        ("Containers".to_owned(), 2, 1),
        ("Local Volumes".to_owned(), 2, 1),
    ];
    assert_eq!(
        df_totals(&c),
        want,
        "system df --json: (type, total, active)"
    );
    let table = c.ok(&["system", "df"]);
    for ty in ["Images", "Containers", "Local Volumes"] {
        assert!(
            table.contains(ty),
            "system df table has a {ty} row:\n{table}"
        );
    }
}

#[test]
fn system_prune_removes_unused_and_keeps_what_is_in_use() {
    if skip_unless_root("system_prune_removes_unused_and_keeps_what_is_in_use") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let mut volumes = VolumeGuard::new(&c);
    let mut networks = NetworkGuard::new(&c);
    let used = unique_name("pr-used");
    let free = unique_name("pr-free");
    for v in [&used, &free] {
        volumes.track(v);
        c.ok(&["volume", "create", v]);
    }
    let net = unique_name("prnet");
    networks.create(&net, 24, &[]);
    let exited = unique_name("pr-exited");
    guard.track(&exited);
    c.ok(&[
        "run",
        "--name",
        &exited,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo x > /f",
    ]);
    c.ok(&["commit", &exited, "pr-named:1"]);
    let dangling = corral_e2e::world::printed_id(&c.ok(&["commit", "-m", "dangling", &exited]));
    let running = unique_name("pr-running");
    looping(&c, &mut guard, &running, &["-v", &format!("{used}:/data")]);

    c.ok(&["system", "prune", "-f"]);
    let names: Vec<String> = c.ps(true).into_iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        std::slice::from_ref(&running),
        "prune removes the exited container only"
    );
    assert!(
        !c.network_ls()
            .iter()
            .any(|n| n["name"] == net.as_str() || n["Name"] == net.as_str()),
        "the unused network is pruned: {:?}",
        c.network_ls()
    );
    let ids: Vec<String> = c.images().into_iter().map(|i| i.id).collect();
    assert!(
        !ids.contains(&dangling),
        "the dangling image is pruned: {ids:?}"
    );
    assert!(c.has_image("pr-named:1"), "without -a a named image stays");
    assert!(c.has_image(BUSYBOX_IMAGE), "the image in use stays");
    assert_eq!(
        c.cmd(&["volume", "inspect", &free]).status.code(),
        Some(0),
        "volumes stay without --volumes"
    );

    c.ok(&["system", "prune", "-f", "-a"]);
    assert!(!c.has_image("pr-named:1"), "-a prunes unused named images");
    assert!(c.has_image(BUSYBOX_IMAGE), "-a keeps the image in use");

    c.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(
        !c.cmd(&["volume", "inspect", &free]).status.success(),
        "--volumes prunes the unused volume"
    );
    assert!(
        c.cmd(&["volume", "inspect", &used]).status.success(),
        "the volume in use stays"
    );
    wait_status(&c, &running, "running");
}

// ---------------------------------------------------------------------------------------------
// images listings

#[test]
fn images_filters_and_formats_as_docker() {
    if skip_unless_root("images_filters_and_formats_as_docker") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let src = unique_name("img-src");
    guard.track(&src);
    c.ok(&[
        "run",
        "--name",
        &src,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo x > /f",
    ]);
    // Created times have a resolution of one second: space the images apart.
    thread::sleep(Duration::from_millis(1100));
    c.ok(&["commit", "-c", "LABEL tier=web", &src, "app:1"]);
    thread::sleep(Duration::from_millis(1100));
    c.ok(&["commit", &src, "app:2"]);
    c.ok(&["commit", "-m", "dangling", &src]);

    let fmt = "{{.Repository}}:{{.Tag}}";
    let list = |filters: &[&str]| {
        let mut args = vec!["images", "--format", fmt];
        for f in filters {
            args.extend(["--filter", f]);
        }
        line_set(&c, &args)
    };
    assert_eq!(
        list(&[]),
        set(&["busybox:test", "app:1", "app:2", "<none>:<none>"])
    );
    assert_eq!(
        list(&["reference=app*"]),
        set(&["app:1", "app:2"]),
        "reference=app*"
    );
    assert_eq!(
        list(&["reference=app:1"]),
        set(&["app:1"]),
        "reference=app:1"
    );
    assert_eq!(
        list(&["dangling=true"]),
        set(&["<none>:<none>"]),
        "dangling=true"
    );
    assert_eq!(list(&["label=tier=web"]), set(&["app:1"]), "label=tier=web");
    assert_eq!(list(&["label=tier"]), set(&["app:1"]), "label=tier");
    assert_eq!(
        list(&["before=app:2"]),
        set(&["busybox:test", "app:1"]),
        "before=app:2"
    );
    assert_eq!(
        list(&["since=app:1"]),
        set(&["app:2", "<none>:<none>"]),
        "since=app:1"
    );
    assert_eq!(
        line_set(&c, &["images", "--format", fmt, "app"]),
        set(&["app:1", "app:2"]),
        "images REPOSITORY"
    );

    let table = c.ok(&[
        "images",
        "--format",
        "table {{.Repository}}\t{{.Tag}}",
        "app",
    ]);
    let rows = lines(&table);
    assert!(
        rows.first()
            .is_some_and(|h| h.starts_with("REPOSITORY") && h.contains("TAG")),
        "`table` adds docker's header:\n{table}"
    );
    assert_eq!(rows.len(), 3, "header and two rows:\n{table}");

    let digests = c.ok(&["images", "--digests", "app"]);
    assert!(
        lines(&digests)[0].contains("DIGEST"),
        "--digests adds a DIGEST column:\n{digests}"
    );
    assert!(
        lines(&digests)
            .iter()
            .skip(1)
            .all(|r| r.contains("sha256:")),
        "each row shows a digest:\n{digests}"
    );

    let (code, stderr) = c.fail(&["images", "--filter", "bogus=1"]);
    assert_eq!(code, EXIT_CORRAL, "unknown filter key: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// network listings

#[test]
fn network_ls_filters_by_name_and_label() {
    if skip_unless_root("network_ls_filters_by_name_and_label") {
        return;
    }
    let c = world();
    let mut networks = NetworkGuard::new(&c);
    let labelled = unique_name("netl");
    let plain = unique_name("netp");
    networks.create(&labelled, 24, &["--label", "team=blue"]);
    networks.create(&plain, 24, &[]);

    let ls = |filter: &str| {
        line_set(
            &c,
            &["network", "ls", "--filter", filter, "--format", "{{.Name}}"],
        )
    };
    assert_eq!(ls(&format!("name={labelled}")), set(&[&labelled]), "name=");
    assert_eq!(ls("label=team=blue"), set(&[&labelled]), "label=team=blue");
    assert_eq!(ls("label=team"), set(&[&labelled]), "label=team");
    assert_eq!(ls("label=team=red"), set(&[]), "label=team=red");
    let info = network_json(&c, &labelled);
    assert_eq!(
        info["labels"]["team"], "blue",
        "network inspect shows the label: {info:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// completion and man pages

#[test]
fn completion_scripts_parse() {
    if skip_unless_tools("completion_scripts_parse", &["bash"]) {
        return;
    }
    let c = Corral::new();
    let bash = c.ok(&["completion", "bash"]);
    assert!(
        bash.contains("complete -F"),
        "bash completion registers a function"
    );
    let path = c.path("corral.bash");
    fs::write(&path, &bash).expect("write bash completion");
    run_ok("bash", &["-n", path_str(&path)], Duration::from_secs(30));
    let zsh = c.ok(&["completion", "zsh"]);
    assert!(
        zsh.contains("#compdef"),
        "zsh completion starts with #compdef"
    );
    let fish = c.ok(&["completion", "fish"]);
    assert!(fish.contains("complete -c corral"), "fish completion");
    c.fail_125(&["completion", "tcsh"]);
}

#[test]
fn man_writes_pages_per_command() {
    if skip_unless_root("man_writes_pages_per_command") {
        return;
    }
    let c = Corral::new();
    let dir = c.path("man");
    c.ok(&["man", path_str(&dir)]);
    for page in ["corral.1", "corral-run.1", "corral-commit.1"] {
        let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".TH")
                || text.starts_with(".ie")
                || text.lines().any(|l| l.starts_with(".TH")),
            "{page} is a man page (.TH):\n{}",
            &text[..text.len().min(300)]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// run flags

#[test]
fn run_replace_removes_the_old_container() {
    if skip_unless_root("run_replace_removes_the_old_container") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("replace");
    let old = looping(&c, &mut guard, &name, &[]);
    let new = looping(&c, &mut guard, &name, &["--replace"]);
    assert_ne!(old, new, "a new container");
    assert!(
        !c.cmd(&["inspect", &old]).status.success(),
        "the old id is gone"
    );
    let rows: Vec<_> = c.ps(true).into_iter().filter(|p| p.name == name).collect();
    assert_eq!(rows.len(), 1, "one container named {name}: {rows:?}");
    assert_eq!(rows[0].id, new);
    // Without --replace the name is taken: docker refuses with 125.
    let (code, _) = c.fail(&["run", "-d", "--name", &name, BUSYBOX_IMAGE, "true"]);
    assert_eq!(code, EXIT_CORRAL);
}

#[test]
fn run_shm_size_and_oom_score_adj_apply() {
    if skip_unless_root("run_shm_size_and_oom_score_adj_apply") {
        return;
    }
    let c = world();
    let mounts = run_rm_ok(
        &c,
        &["--shm-size", "8m"],
        &["grep", " /dev/shm ", "/proc/mounts"],
    );
    assert!(mounts.contains("size=8192k"), "--shm-size 8m: {mounts}");
    let adj = run_rm_ok(
        &c,
        &["--oom-score-adj", "500"],
        &["cat", "/proc/self/oom_score_adj"],
    );
    assert_eq!(adj.trim(), "500");
}

#[test]
fn run_cpu_quota_shows_in_cgroup_and_conflicts_with_cpus() {
    if skip_unless_root("run_cpu_quota_shows_in_cgroup_and_conflicts_with_cpus") {
        return;
    }
    let c = world();
    let got = run_rm_ok(
        &c,
        &["--cpu-quota", "50000", "--cpu-period", "100000"],
        &[
            "cat",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
        ],
    );
    assert_eq!(lines(&got), ["50000", "100000"], "cfs quota and period");
    let out = run_rm(&c, &["--cpus", "1", "--cpu-quota", "50000"], &["true"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "--cpus with --cpu-quota: {out:?}"
    );
}

#[test]
fn run_ipc_and_uts_host_share_host_namespaces() {
    if skip_unless_root("run_ipc_and_uts_host_share_host_namespaces") {
        return;
    }
    let c = world();
    let host_ipc = fs::read_link("/proc/self/ns/ipc").expect("readlink ipc ns");
    let got = run_rm_ok(
        &c,
        &["--ipc", "host"],
        &["sh", "-c", "readlink /proc/self/ns/ipc"],
    );
    assert_eq!(got.trim(), host_ipc.to_string_lossy(), "--ipc host");
    let own = run_rm_ok(&c, &[], &["sh", "-c", "readlink /proc/self/ns/ipc"]);
    assert_ne!(
        own.trim(),
        host_ipc.to_string_lossy(),
        "by default a private ipc namespace"
    );

    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let got = run_rm_ok(&c, &["--uts", "host"], &["hostname"]);
    assert_eq!(
        got.trim(),
        host_name.trim(),
        "--uts host sees the host's hostname"
    );
    let after = fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(
        after, host_name,
        "--uts host leaves the host's hostname alone"
    );
    let out = run_rm(&c, &["--uts", "host", "--hostname", "x"], &["true"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "--uts host --hostname: {out:?}"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname"),
        host_name,
        "the host's hostname is unchanged"
    );
}

#[test]
fn run_security_opt_mask_and_unmask_paths() {
    if skip_unless_root("run_security_opt_mask_and_unmask_paths") {
        return;
    }
    let c = world();
    // /proc/kcore is masked by docker's default list; kernels without it still have
    // /proc/timer_list, on the same list.
    let masked = ["/proc/kcore", "/proc/timer_list"]
        .into_iter()
        .find(|p| fs::metadata(p).is_ok())
        .expect("the host has /proc/kcore or /proc/timer_list");
    let default = run_rm_ok(&c, &[], &["stat", "-c", "%F", masked]);
    assert_eq!(
        default.trim(),
        "character special file",
        "{masked} is masked by default"
    );
    let unmask = format!("unmask={masked}");
    let got = run_rm_ok(
        &c,
        &["--security-opt", &unmask],
        &["stat", "-c", "%F", masked],
    );
    assert_ne!(
        got.trim(),
        default.trim(),
        "--security-opt {unmask} shows the real file"
    );

    let got = run_rm_ok(
        &c,
        &["--security-opt", "mask=/etc/passwd"],
        &["sh", "-c", "cat /etc/passwd | wc -c"],
    );
    assert_eq!(
        got.trim(),
        "0",
        "--security-opt mask=/etc/passwd reads empty"
    );
    let plain = run_rm_ok(&c, &[], &["sh", "-c", "cat /etc/passwd | wc -c"]);
    assert_ne!(plain.trim(), "0", "unmasked /etc/passwd has content");
}

#[test]
fn volume_labels_and_inspect_formats_answer_as_docker() {
    if skip_unless_root("volume_labels_and_inspect_formats_answer_as_docker")
        || skip_unless_tools(
            "volume_labels_and_inspect_formats_answer_as_docker",
            &["ip", "nft"],
        )
    {
        return;
    }
    let c = world();
    let mut volumes = VolumeGuard::new(&c);
    let vol = unique_name("labelled");
    volumes.track(&vol);
    c.ok(&[
        "volume", "create", "--label", "team=web", "-l", "tier", &vol,
    ]);
    assert_eq!(
        c.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{index .Labels \"team\"}} {{json .Labels}}",
            &vol
        ])
        .trim(),
        format!("{vol} local web {{\"team\":\"web\",\"tier\":\"\"}}")
    );
    // Driver options that do not make a mount (a tmpfs without its device): refused, nothing
    // made (tests/volumes.rs has the options that do).
    let other = unique_name("opts");
    volumes.track(&other);
    let err = c.fail_125(&["volume", "create", "-o", "type=tmpfs", &other]);
    assert!(err.contains("device is missing"), "{err}");
    assert!(!c.ok(&["volume", "ls", "-q"]).lines().any(|l| l == other));

    let mut nets = NetworkGuard::new(&c);
    let name = unique_name("fmtnet");
    let net = nets.create(&name, 24, &[]);
    let text = c.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Internal}}",
        &name,
    ]);
    assert_eq!(
        text.trim(),
        format!("{name} bridge {} {} false", net.subnet, net.gateway)
    );
    let err = c.fail_125(&["network", "inspect", "-f", "{{.Name", &name]);
    assert!(err.contains("template"), "{err}");
}

#[test]
fn top_with_ps_options_prints_the_containers_rows_of_host_ps() {
    if skip_unless_root("top_with_ps_options_prints_the_containers_rows_of_host_ps")
        || skip_unless_tools(
            "top_with_ps_options_prints_the_containers_rows_of_host_ps",
            &["ps"],
        )
    {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("topps");
    looping(&c, &mut guard, &name, &["--network", "none"]);
    let text = c.ok(&["top", &name, "aux"]);
    let rows = lines(&text);
    assert!(
        rows[0].contains("USER") && rows[0].contains("PID") && rows[0].contains("COMMAND"),
        "{text}"
    );
    // The shell, at least (its sleeps come and go between the two reads).
    assert!(rows.len() >= 2, "the container's shell: {text}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains("sh -c") || r.contains("sleep")),
        "only the container's rows: {text}"
    );
    let text = c.ok(&["top", &name, "-o", "pid,comm"]);
    assert_eq!(
        lines(&text)[0].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"],
        "{text}"
    );
    let err = c.fail_125(&["top", &name, "-o", "comm"]);
    assert!(err.contains("PID column"), "{err}");
}

#[test]
fn exec_privileged_gets_every_capability_and_no_filter() {
    if skip_unless_root("exec_privileged_gets_every_capability_and_no_filter") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("execpriv");
    looping(&c, &mut guard, &name, &["--network", "none"]);
    let status = |flags: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            name.as_str(),
            "grep",
            "-E",
            "^(CapEff|Seccomp):",
            "/proc/self/status",
        ]);
        let text = c.ok(&args);
        let get = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_default()
                .to_owned()
        };
        (
            u64::from_str_radix(&get("CapEff:"), 16).unwrap_or(0),
            get("Seccomp:"),
        )
    };
    let (caps, seccomp) = status(&[]);
    assert_eq!(caps & (1 << 21), 0, "a plain exec has no CAP_SYS_ADMIN");
    assert_eq!(seccomp, "2", "a plain exec is filtered");
    let (caps, seccomp) = status(&["--privileged"]);
    assert_ne!(caps & (1 << 21), 0, "exec --privileged has CAP_SYS_ADMIN");
    assert_eq!(seccomp, "0", "exec --privileged is not filtered");
    // The container itself is unchanged.
    let (caps, _) = status(&[]);
    assert_eq!(caps & (1 << 21), 0);
}
