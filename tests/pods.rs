//! End-to-end tests of pods, checked as a podman user checks them: `corral pod create`, `pod
//! ls|ps`, `pod inspect`, `pod start|stop|rm`, and `run --pod`. The containers of a pod share
//! one network namespace (one address, one `localhost`, the pod's published ports), one IPC
//! and one UTS namespace (the pod's hostname), and keep pid namespaces of their own; a sandbox
//! process, `corral __pod`, holds the shared namespaces while the pod runs.
//!
//! Where corral and podman differ, the tests assert podman's behaviour (podman 4.3, Debian's)
//! and say so in the assertion message.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`) with the busybox
//! image imported as `busybox:test`, on networks of its own, and guards that remove its pods,
//! containers and networks even when it fails ([`PodGuard`] drops first).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use corral_e2e::checks::{infra_pid, is_live_sandbox, json_documents, pod_inspect, PodGuard};
use corral_e2e::containers::{poll_until, printed_container_id, BUSYBOX_IMAGE};
use corral_e2e::engine::{json_at, ok_output};
use corral_e2e::networks::{free_tcp_port, host_python_binds, http_get_ok, NetworkGuard};
use corral_e2e::process::describe;
use corral_e2e::{
    report_skip, skip_unless_tools, stderr_of, unique_name, unique_token, ContainerGuard, Corral,
};

/// corral's own failures (docs/cli-containers.md).
const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command: containers here live seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a state change (a server listening, a process gone) may take to show.
const SETTLE: Duration = Duration::from_secs(10);
/// Host tools the pods' networks need.
const TOOLS: &[&str] = &["ip", "nft"];
/// A command that runs until SIGTERM, then exits 0 at once (a shell as PID 1 has no default
/// action for TERM, so a bare `sleep` would wait out the whole stop timeout).
const UNTIL_TERM: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
/// The port the pods' web servers listen on, inside the pod.
const WEB_PORT: u16 = 8080;
/// Prints the namespace links of the calling process: net, ipc, uts, pid, one per line.
const NS_LINKS: &str = "for k in net ipc uts pid; do busybox readlink /proc/self/ns/$k; done";

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// `corral pod create --name NAME FLAGS...`, tracked by `pods`; the id it printed.
fn pod_create(c: &Corral, pods: &mut PodGuard<'_>, name: &str, flags: &[&str]) -> String {
    pods.track(name);
    let mut args = vec!["pod", "create", "--name", name];
    args.extend_from_slice(flags);
    let out = c.ok(&args);
    let id = out.trim().to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "pod create prints the pod's id (64 hex), got {out:?}"
    );
    id
}

/// `corral run -d --name NAME --pod POD busybox:test CMD...`, tracked by `guard`; the id.
fn run_in_pod(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    pod: &str,
    cmd: &[&str],
) -> String {
    guard.track(name);
    let mut args = vec!["run", "-d", "--name", name, "--pod", pod, BUSYBOX_IMAGE];
    args.extend_from_slice(cmd);
    printed_container_id(&c.ok(&args))
}

/// `corral run --rm FLAGS busybox:test CMD...`, whatever its outcome.
fn run_rm(c: &Corral, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(BUSYBOX_IMAGE);
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// As [`run_rm`], panicking unless it succeeds; its stdout.
fn run_rm_ok(c: &Corral, flags: &[&str], cmd: &[&str]) -> String {
    ok_output(
        &format!("corral run --rm {flags:?} {BUSYBOX_IMAGE} {cmd:?}"),
        &run_rm(c, flags, cmd),
    )
}

/// The shell command of a busybox web server on [`WEB_PORT`] that serves `body` as `/`.
fn web_server(body: &str) -> String {
    format!(
        "mkdir -p /w && echo {body} > /w/index.html && exec busybox httpd -f -p {WEB_PORT} -h /w"
    )
}

/// Waits until `wget` of the pod-local server from a container run with `flags` returns
/// `body`; the last output. (No `-T`: busybox 1.35's static wget dies of SIGSEGV with it.)
fn wget_local_until(c: &Corral, flags: &[&str], body: &str) -> String {
    let url = format!("http://127.0.0.1:{WEB_PORT}/");
    let mut last = String::new();
    poll_until(SETTLE, || {
        let out = run_rm(c, flags, &["wget", "-q", "-O", "-", &url]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr_of(&out)
        );
        out.status.success() && last.contains(body)
    });
    last
}

/// The namespace links of a process started by `exec` in `container`: net, ipc, uts, pid.
fn exec_ns_links(c: &Corral, container: &str) -> Vec<String> {
    let text = c.ok(&["exec", container, "sh", "-c", NS_LINKS]);
    parse_ns_links(&text)
}

/// The namespace links of a container run with `flags`: net, ipc, uts, pid.
fn run_ns_links(c: &Corral, flags: &[&str]) -> Vec<String> {
    parse_ns_links(&run_rm_ok(c, flags, &["sh", "-c", NS_LINKS]))
}

fn parse_ns_links(text: &str) -> Vec<String> {
    let links: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    assert!(
        links.len() == 4
            && ["net:[", "ipc:[", "uts:[", "pid:["]
                .iter()
                .zip(&links)
                .all(|(k, l)| l.starts_with(k)),
        "expected net, ipc, uts and pid links, got:\n{text}"
    );
    links
}

/// `.NetworkSettings.IPAddress` of `inspect NAME` (docker's shape), parsed.
fn container_ip(c: &Corral, name: &str) -> Option<Ipv4Addr> {
    let info = c.docker_inspect(&[name]);
    json_at(&info, &["NetworkSettings", "IPAddress"])
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// `IPAddress` of a `pod inspect` object, parsed.
fn pod_ip(pod: &Value) -> Option<Ipv4Addr> {
    pod["IPAddress"].as_str().and_then(|s| s.parse().ok())
}

/// `.State.Status` of container `name` (docker's shape).
fn container_status(c: &Corral, name: &str) -> String {
    c.docker_inspect(&[name])["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `GET /` of the host's `127.0.0.1:port` until it answers 200; the body or the error.
fn host_get(port: u16) -> Result<String, String> {
    http_get_ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/", SETTLE)
}

/// Waits until `pid` is no longer a live sandbox; whether it went.
fn sandbox_gone(pid: u32) -> bool {
    poll_until(SETTLE, || !is_live_sandbox(pid))
}

// ---------------------------------------------------------------------------------------------
// 1, 4. shared namespaces

#[test]
fn pod_members_share_localhost_network_ipc_and_uts_but_not_pid() {
    if skip_unless_tools(
        "pod_members_share_localhost_network_ipc_and_uts_but_not_pid",
        TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let pod = unique_name("share");
    pod_create(&c, &mut pods, &pod, &["--network", &net.name]);
    let web = unique_name("web");
    let body = unique_token();
    run_in_pod(&c, &mut g, &web, &pod, &["sh", "-c", &web_server(&body)]);

    let got = wget_local_until(&c, &["--pod", &pod], &body);
    assert!(
        got.contains(&body),
        "a second container of the pod reaches the first one's server at 127.0.0.1:{WEB_PORT}: \
         {got}"
    );
    let url = format!("http://127.0.0.1:{WEB_PORT}/");
    let outsider = run_rm(
        &c,
        &["--network", &net.name],
        &["wget", "-q", "-O", "-", &url],
    );
    assert!(
        !outsider.status.success() && !String::from_utf8_lossy(&outsider.stdout).contains(&body),
        "a container outside the pod has a localhost of its own: {}",
        describe(&outsider)
    );

    let first = exec_ns_links(&c, &web);
    let second = run_ns_links(&c, &["--pod", &pod]);
    let outside = run_ns_links(&c, &["--network", &net.name]);
    for (i, kind) in ["net", "ipc", "uts"].iter().enumerate() {
        assert_eq!(
            first[i], second[i],
            "both members of the pod are in one {kind} namespace"
        );
        assert_ne!(
            first[i], outside[i],
            "a container outside the pod has a {kind} namespace of its own"
        );
    }
    assert_ne!(
        first[3], second[3],
        "the pid namespace is not shared (podman's default): {first:?} {second:?}"
    );

    // The sandbox holds what the members share.
    let info = pod_inspect(&c, &pod);
    let shared: Vec<&str> = info["SharedNamespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for kind in ["net", "ipc", "uts"] {
        assert!(shared.contains(&kind), "SharedNamespaces: {info:#}");
    }
    let sandbox = infra_pid(&info).unwrap_or_else(|| panic!("no InfraPid: {info:#}"));
    for (i, kind) in ["net", "ipc", "uts"].iter().enumerate() {
        let held = std::fs::read_link(format!("/proc/{sandbox}/ns/{kind}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(
            held, first[i],
            "the sandbox {sandbox} holds the {kind} namespace"
        );
    }
}

#[test]
fn pod_members_share_sysv_ipc_objects() {
    const TEST: &str = "pod_members_share_sysv_ipc_objects";
    if skip_unless_tools(TEST, TOOLS) {
        return;
    }
    // busybox-static has no ipcmk: the host's python3 makes the segment through libc.
    let Some(binds) = host_python_binds() else {
        report_skip(
            TEST,
            "no /usr/bin/python3 with a merged /usr to create a SysV segment (busybox has no \
             ipcmk); only the ns/ipc links are checked, in \
             pod_members_share_localhost_network_ipc_and_uts_but_not_pid",
        );
        return;
    };
    let c = world();
    let _g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let pod = unique_name("ipc");
    pod_create(&c, &mut pods, &pod, &[]);
    // A key of this run: `/proc/sysvipc/shm` prints keys in decimal.
    let key = 0x0c00_0000 + (std::process::id() % 0x00ff_ffff);
    let make = format!(
        "import ctypes; libc = ctypes.CDLL(None); \
         print(libc.shmget({key}, 4096, 0o1600))"
    );
    let mut flags: Vec<&str> = vec!["--pod", &pod];
    flags.extend(binds.iter().map(String::as_str));
    let shmid = run_rm_ok(&c, &flags, &["/usr/bin/python3", "-c", &make]);
    assert!(
        shmid.trim().parse::<i64>().is_ok_and(|id| id >= 0),
        "shmget in the pod: {shmid}"
    );

    let has_key = |text: &str| {
        text.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&key.to_string()))
    };
    let member = run_rm_ok(&c, &["--pod", &pod], &["cat", "/proc/sysvipc/shm"]);
    assert!(
        has_key(&member),
        "another member of the pod sees the segment (key {key}):\n{member}"
    );
    let outside = run_rm_ok(&c, &[], &["cat", "/proc/sysvipc/shm"]);
    assert!(
        !has_key(&outside),
        "a container outside the pod does not see it (key {key}):\n{outside}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. hostname, /etc/hosts, address

#[test]
fn pod_members_take_the_pods_hostname_hosts_line_and_address() {
    if skip_unless_tools(
        "pod_members_take_the_pods_hostname_hosts_line_and_address",
        TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let named = unique_name("hn");
    let host = format!("h{}", unique_token());
    pod_create(
        &c,
        &mut pods,
        &named,
        &["--network", &net.name, "--hostname", &host],
    );
    let plain = unique_name("plain");
    pod_create(&c, &mut pods, &plain, &["--network", &net.name]);

    for (pod, hostname) in [(&named, &host), (&plain, &plain)] {
        let member = unique_name("m");
        run_in_pod(&c, &mut g, &member, pod, &["sh", "-c", UNTIL_TERM]);
        let info = pod_inspect(&c, pod);
        assert_eq!(info["Hostname"], hostname.as_str(), "pod inspect: {info:#}");
        let ip = pod_ip(&info).unwrap_or_else(|| panic!("pod {pod}: no IPAddress: {info:#}"));
        assert!(net.holds(ip), "the pod's {ip} is in {}", net.subnet);

        let first = c.ok(&["exec", &member, "hostname"]);
        let second = run_rm_ok(&c, &["--pod", pod], &["hostname"]);
        assert_eq!(first.trim(), hostname, "hostname of a member of {pod}");
        assert_eq!(
            second.trim(),
            hostname,
            "hostname of another member of {pod}"
        );

        let pod_line = |hosts: &str| -> Option<String> {
            hosts
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&ip.to_string()))
                .map(str::to_owned)
        };
        let hosts_first = c.ok(&["exec", &member, "cat", "/etc/hosts"]);
        let hosts_second = run_rm_ok(&c, &["--pod", pod], &["cat", "/etc/hosts"]);
        let line = pod_line(&hosts_first)
            .unwrap_or_else(|| panic!("no /etc/hosts line for the pod's {ip}:\n{hosts_first}"));
        assert!(
            line.split_whitespace().any(|w| w == hostname),
            "the pod's line names its hostname {hostname}: {line}"
        );
        assert_eq!(
            pod_line(&hosts_second).as_deref(),
            Some(line.as_str()),
            "both members see the same line for the pod:\n{hosts_second}"
        );

        assert_eq!(
            container_ip(&c, &member),
            Some(ip),
            "inspect of a member shows the pod's address in .NetworkSettings.IPAddress"
        );
        let endpoints = c.network_inspect(&net.name).endpoints;
        assert_eq!(
            endpoints.iter().filter(|e| e.ip == Some(ip)).count(),
            1,
            "one endpoint for the pod's {ip}, whatever its members: {endpoints:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. published ports

#[test]
fn port_published_on_the_pod_reaches_a_members_server() {
    if skip_unless_tools("port_published_on_the_pod_reaches_a_members_server", TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let pod = unique_name("pub");
    let port = free_tcp_port();
    let spec = format!("{port}:{WEB_PORT}");
    pod_create(&c, &mut pods, &pod, &["--network", &net.name, "-p", &spec]);
    let body = unique_token();
    run_in_pod(
        &c,
        &mut g,
        &unique_name("web"),
        &pod,
        &["sh", "-c", &web_server(&body)],
    );

    let got = host_get(port);
    assert!(
        matches!(&got, Ok(text) if text.contains(&body)),
        "GET http://127.0.0.1:{port}/ from the host reaches the member's server: {got:?}"
    );
    let info = pod_inspect(&c, &pod);
    let ports = info["Ports"].to_string();
    assert!(
        ports.contains(&port.to_string()) && ports.contains(&WEB_PORT.to_string()),
        "pod inspect shows the published port: {info:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. what the pod owns, and bad names

#[test]
fn run_pod_refuses_what_the_pod_owns_and_unknown_pods() {
    if skip_unless_tools("run_pod_refuses_what_the_pod_owns_and_unknown_pods", TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let _g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let pod = unique_name("owns");
    pod_create(&c, &mut pods, &pod, &["--network", &net.name]);

    let cases: [(&[&str], &str); 3] = [
        (&["--network", &net.name], "network"),
        (&["-p", "8080"], "network"),
        (&["--hostname", "h"], "hostname"),
    ];
    for (flags, owned) in cases {
        let out = run_rm(&c, &[&["--pod", &pod][..], flags].concat(), &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "run --pod {pod} {flags:?}: {}",
            describe(&out)
        );
        let err = stderr_of(&out);
        assert!(
            err.contains(&pod) && err.contains("pod owns") && err.contains(owned),
            "run --pod {pod} {flags:?} says the pod owns the {owned}: {err}"
        );
    }
    let out = run_rm(&c, &["--pod", "nosuchpod"], &["true"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("nosuchpod"),
        "--pod nosuchpod names it: {}",
        describe(&out)
    );
    assert!(c.ps(true).is_empty(), "a refused run leaves no container");

    let again = c.fail_125(&["pod", "create", "--name", &pod]);
    assert!(
        again.contains(&pod),
        "pod create of a taken name names it: {again}"
    );
    let host = c.fail_125(&["pod", "create", "--network", "host"]);
    assert!(host.contains("host"), "pod create --network host: {host}");
    let listed = c.ok(&["pod", "ls", "-q"]);
    assert_eq!(
        listed.split_whitespace().count(),
        1,
        "refused creations leave no pod:\n{listed}"
    );
}

#[test]
fn pod_ls_lists_pods_as_table_json_and_ids() {
    if skip_unless_tools("pod_ls_lists_pods_as_table_json_and_ids", TOOLS) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let a = unique_name("lsa");
    let b = unique_name("lsb");
    let a_id = pod_create(&c, &mut pods, &a, &["-l", "tier=web"]);
    let b_id = pod_create(&c, &mut pods, &b, &["--start"]);

    let table = c.ok(&["pod", "ls"]);
    for name in [&a, &b] {
        assert!(
            table
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().any(|w| w == name)),
            "pod ls lists {name}:\n{table}"
        );
    }
    let quiet = c.ok(&["pod", "ps", "-q"]);
    let mut ids: Vec<&str> = quiet.split_whitespace().collect();
    ids.sort_unstable();
    let mut want = vec![&a_id[..12], &b_id[..12]];
    want.sort_unstable();
    assert_eq!(ids, want, "pod ps -q: podman's 12-digit ids");

    let text = c.ok(&["pod", "ls", "--json"]);
    let rows = json_documents(&text).unwrap_or_else(|e| panic!("pod ls --json: {e}:\n{text}"));
    let row = |name: &str| -> Value {
        rows.iter()
            .find(|r| r["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("pod ls --json lacks {name}:\n{text}"))
    };
    assert_eq!(row(&a)["State"], "Created", "never started: {text}");
    assert_eq!(row(&a)["Labels"]["tier"], "web", "labels: {text}");
    assert_eq!(row(&b)["State"], "Running", "pod create --start: {text}");
    assert_eq!(row(&b)["Id"], b_id.as_str());
}

// ---------------------------------------------------------------------------------------------
// 6. stop, start, rm

#[test]
fn pod_stop_start_and_rm_manage_members_sandbox_address_and_port() {
    if skip_unless_tools(
        "pod_stop_start_and_rm_manage_members_sandbox_address_and_port",
        TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let pod = unique_name("life");
    let port = free_tcp_port();
    let spec = format!("{port}:{WEB_PORT}");
    pod_create(&c, &mut pods, &pod, &["--network", &net.name, "-p", &spec]);
    let web = unique_name("web");
    let side = unique_name("side");
    let body = unique_token();
    let web_id = run_in_pod(&c, &mut g, &web, &pod, &["sh", "-c", &web_server(&body)]);
    let side_id = run_in_pod(&c, &mut g, &side, &pod, &["sh", "-c", UNTIL_TERM]);
    let got = host_get(port);
    assert!(
        matches!(&got, Ok(t) if t.contains(&body)),
        "served before stop: {got:?}"
    );

    let running = pod_inspect(&c, &pod);
    assert_eq!(running["State"], "Running", "{running:#}");
    assert_eq!(running["NumContainers"], 2, "{running:#}");
    let mut members: Vec<(String, String)> = running["Containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let field = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                    (field("Id"), field("Name"))
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    let mut want = vec![(web_id, web.clone()), (side_id, side.clone())];
    want.sort();
    assert_eq!(members, want, "pod inspect's Containers: {running:#}");
    let sandbox = infra_pid(&running).unwrap_or_else(|| panic!("no InfraPid: {running:#}"));
    assert!(
        is_live_sandbox(sandbox),
        "InfraPid {sandbox} is a live `corral __pod` process"
    );

    let refused = c.fail_125(&["pod", "rm", &pod]);
    assert!(
        refused.contains(&pod),
        "pod rm of a running pod names it: {refused}"
    );
    assert_eq!(
        pod_inspect(&c, &pod)["State"],
        "Running",
        "a refused rm changes nothing"
    );

    // Deviations from podman that do not stop the rest of the checks.
    let mut wrong: Vec<String> = Vec::new();

    c.ok(&["pod", "stop", "-t", "5", &pod]);
    let stopped = pod_inspect(&c, &pod);
    assert_ne!(stopped["State"], "Running", "after pod stop: {stopped:#}");
    if stopped["State"] != "Exited" {
        wrong.push(format!(
            "pod inspect after `pod stop`: podman says State \"Exited\", got {}",
            stopped["State"]
        ));
    }
    for member in [&web, &side] {
        assert_eq!(
            container_status(&c, member),
            "exited",
            "{member} after pod stop"
        );
    }
    assert!(
        sandbox_gone(sandbox),
        "pod stop leaves no sandbox: {sandbox} is still `{}`",
        corral_e2e::containers::process_cmdline(sandbox)
    );
    assert!(
        infra_pid(&stopped).is_none(),
        "no InfraPid when stopped: {stopped:#}"
    );

    c.ok(&["pod", "start", &pod]);
    let restarted = pod_inspect(&c, &pod);
    assert_eq!(restarted["State"], "Running", "{restarted:#}");
    for member in [&web, &side] {
        assert_eq!(
            container_status(&c, member),
            "running",
            "{member} after pod start"
        );
    }
    let members: Vec<&str> = restarted["Containers"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["State"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(members, ["running", "running"], "{restarted:#}");
    let sandbox = infra_pid(&restarted).unwrap_or_else(|| panic!("no InfraPid: {restarted:#}"));
    let got = host_get(port);
    assert!(
        matches!(&got, Ok(t) if t.contains(&body)),
        "served again after pod start: {got:?}"
    );

    c.ok(&["pod", "rm", "-f", &pod]);
    assert!(
        c.ok(&["pod", "ls", "-q"]).trim().is_empty(),
        "pod rm -f removes the pod"
    );
    let left: Vec<String> = c.ps(true).into_iter().map(|p| p.name).collect();
    assert!(
        left.is_empty(),
        "pod rm -f removes its containers: {left:?}"
    );
    assert!(
        sandbox_gone(sandbox),
        "pod rm -f ends the sandbox {sandbox}"
    );
    let endpoints = c.network_inspect(&net.name).endpoints;
    assert!(
        endpoints.is_empty(),
        "pod rm -f releases the pod's address: {endpoints:#?}"
    );

    // The port is free again: a new pod takes it.
    let next = unique_name("next");
    let body2 = unique_token();
    pod_create(
        &c,
        &mut pods,
        &next,
        &["--network", &net.name, "-p", &spec, "--start"],
    );
    run_in_pod(
        &c,
        &mut g,
        &unique_name("web2"),
        &next,
        &["sh", "-c", &web_server(&body2)],
    );
    let got = host_get(port);
    assert!(
        matches!(&got, Ok(t) if t.contains(&body2)),
        "a new pod serves on the removed pod's host port {port}: {got:?}"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---------------------------------------------------------------------------------------------
// 7. a container made in a stopped pod

#[test]
fn run_in_a_stopped_pod_starts_the_pod() {
    if skip_unless_tools("run_in_a_stopped_pod_starts_the_pod", TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let net = nets.create(&unique_name("pn"), 24, &[]);
    let pod = unique_name("lazy");
    pod_create(&c, &mut pods, &pod, &["--network", &net.name]);
    assert_eq!(
        pod_inspect(&c, &pod)["State"],
        "Created",
        "not started by create"
    );

    let first = unique_name("first");
    run_in_pod(&c, &mut g, &first, &pod, &["sh", "-c", UNTIL_TERM]);
    assert_eq!(
        pod_inspect(&c, &pod)["State"],
        "Running",
        "the first member's start starts the pod"
    );
    c.ok(&["pod", "stop", "-t", "5", &pod]);
    assert_ne!(pod_inspect(&c, &pod)["State"], "Running");

    let second = unique_name("second");
    run_in_pod(&c, &mut g, &second, &pod, &["sh", "-c", UNTIL_TERM]);
    let info = pod_inspect(&c, &pod);
    assert_eq!(
        info["State"], "Running",
        "run -d --pod of a stopped pod starts it: {info:#}"
    );
    assert_eq!(container_status(&c, &second), "running");
    let sandbox = infra_pid(&info).unwrap_or_else(|| panic!("no InfraPid: {info:#}"));
    let links = exec_ns_links(&c, &second);
    let held = std::fs::read_link(format!("/proc/{sandbox}/ns/net"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(
        links[0], held,
        "the new member is in the restarted sandbox's network"
    );
    let ip = pod_ip(&info).unwrap_or_else(|| panic!("no IPAddress: {info:#}"));
    assert!(net.holds(ip), "the pod has an address again: {ip}");
    assert_eq!(container_ip(&c, &second), Some(ip));
}

// ---------------------------------------------------------------------------------------------
// 8. events

#[test]
fn events_list_a_pods_create_start_stop_and_remove() {
    if skip_unless_tools("events_list_a_pods_create_start_stop_and_remove", TOOLS) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let mut pods = PodGuard::new(&c);
    let pod = unique_name("ev");
    let id = pod_create(&c, &mut pods, &pod, &[]);
    c.ok(&["pod", "start", &pod]);
    c.ok(&["pod", "stop", &pod]);
    c.ok(&["pod", "rm", &pod]);

    let text = c.ok(&[
        "events", "--since", "1m", "--until", "0s", "--filter", "type=pod", "--format", "json",
    ]);
    let events = json_documents(&text).unwrap_or_else(|e| panic!("events: {e}:\n{text}"));
    assert!(
        events.iter().all(|e| e["Type"] == "pod"),
        "--filter type=pod gives pod events only:\n{text}"
    );
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["Actor"]["ID"] == id.as_str())
        .collect();
    let actions: Vec<&str> = mine.iter().filter_map(|e| e["Action"].as_str()).collect();
    assert_eq!(
        actions,
        ["create", "start", "stop", "remove"],
        "the pod's events in order:\n{text}"
    );
    for e in mine {
        assert_eq!(e["Actor"]["Attributes"]["name"], pod.as_str(), "{e}");
    }
}
