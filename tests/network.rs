//! End-to-end tests of corral's networks against the contract in docs/cli-networks.md, with
//! real packets: containers on a user network reach each other by name and alias over TCP and
//! UDP and nothing on another network reaches them; published ports serve the host on
//! loopback and on its primary address; an `--internal` network has no way out while a normal
//! one reaches the outside masqueraded to the host's address; bad input is refused with 125
//! and leaves nothing behind; concurrent starts get distinct addresses; and every test ends by
//! removing its containers and networks and checking that no link, nft rule or DNS server of
//! them is left on the host.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`), on networks of
//! its own in 10.124.0.0/16 (see `corral_e2e::networks`), never on the default network (one per
//! host, `Corral::with_default_network`) but in
//! [`default_network_serves_containers_without_network_flag_in_every_root`], which holds a lock
//! for it.
//! "The outside" is a network namespace the test makes (`corral_e2e::netns`). Guards remove
//! containers, networks, the namespace and its veth even when a test fails.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Output;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use corral_e2e::containers::{poll_until, run_detached, run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::netns::Outside;
use corral_e2e::networks::{
    assert_network_gone, attachments, bridge_ports, corral_nft_table, free_tcp_port, free_udp_port,
    host_primary_ipv4, host_python_binds, http_get_ok, ip_on, links_of_bridge, next_test_subnet,
    udp_exchange, write_python_scripts, NetworkGuard, TestNetwork, DEFAULT_BRIDGE, DEFAULT_GATEWAY,
    DEFAULT_NETWORK, DEFAULT_SUBNET, HOST_PYTHON,
};
use corral_e2e::process::describe;
use corral_e2e::{
    path_str, report_skip, skip_unless_tools, stdout_of, unique_name, unique_token, ContainerGuard,
    Corral,
};

/// Deadline of one corral command here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server in a just-started container may take to answer.
const SERVER_START: Duration = Duration::from_secs(10);
/// Host tools every test here needs.
const TOOLS: &[&str] = &["ip", "nft"];

// ---------------------------------------------------------------------------------------------
// helpers

fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// The `-v` flags for the host's python3 in a busybox container, or `None` after a loud skip.
fn python_binds(test: &str) -> Option<Vec<String>> {
    let binds = host_python_binds();
    if binds.is_none() {
        report_skip(
            test,
            &format!("{HOST_PYTHON} with a merged /usr is needed for UDP"),
        );
    }
    binds
}

/// `corral exec C CMD...`, whatever its outcome.
fn exec(c: &Corral, container: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// Runs `attempt` until its stdout contains `want` or [`SERVER_START`] passes; the last output.
fn until_contains(want: &str, mut attempt: impl FnMut() -> Output) -> Output {
    let mut last = attempt();
    poll_until(SERVER_START, || {
        if stdout_of(&last).contains(want) {
            return true;
        }
        last = attempt();
        stdout_of(&last).contains(want)
    });
    last
}

/// `busybox nc -w 2 HOST PORT` from inside `container`: what the server sent, if anything.
fn tcp_from(c: &Corral, container: &str, host: &str, port: u16) -> Output {
    exec(c, container, &["nc", "-w", "2", host, &port.to_string()])
}

/// Asserts that `container` gets `want` from `host:port` over TCP (retrying while the server
/// starts).
fn assert_tcp_reaches(c: &Corral, container: &str, host: &str, port: u16, want: &str) {
    let out = until_contains(want, || tcp_from(c, container, host, port));
    assert!(
        stdout_of(&out).contains(want),
        "{container} -> {host}:{port}/tcp: expected {want:?}: {}",
        describe(&out)
    );
}

/// The end of every test: `rm -f` the containers, `network rm` the networks (which must
/// succeed without force), then the leak check of each network.
fn remove_and_check(c: &Corral, containers: &[&str], networks: &[&TestNetwork]) {
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend_from_slice(containers);
        c.ok(&args);
    }
    for n in networks {
        c.ok(&["network", "rm", &n.name]);
    }
    let listed: Vec<String> = c
        .network_ls()
        .iter()
        .filter_map(|n| n.get("name")?.as_str().map(str::to_owned))
        .collect();
    for n in networks {
        assert!(
            !listed.contains(&n.name),
            "network ls still lists {}: {listed:?}",
            n.name
        );
        assert_network_gone(n);
    }
}

/// After a refused `run --name NAME ... --network NET`: no container of that name, no
/// endpoint on the network, no device on its bridge.
fn assert_refused_run_left_nothing(c: &Corral, name: &str, net: &TestNetwork) {
    assert!(
        c.listed_container(name).is_none(),
        "a refused run left container {name} in ps -a"
    );
    let info = c.network_inspect(&net.name);
    assert!(
        info.endpoint_of(name).is_none(),
        "a refused run left an endpoint of {name} on {}: {:#}",
        net.name,
        info.raw
    );
    let ports = bridge_ports(&net.bridge);
    let others = info.endpoints.len();
    assert!(
        ports.len() == others,
        "bridge {} has devices {ports:?} but the network has {others} endpoints",
        net.bridge
    );
}

/// Two consecutive TCP ports free on the host right now.
fn free_tcp_port_pair() -> u16 {
    for _ in 0..50 {
        let p = free_tcp_port();
        if p < u16::MAX && TcpListener::bind(("0.0.0.0", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free TCP ports");
}

/// Whether the `-p` mapping `host_port -> container_port/protocol` is in `inspect`'s
/// `network_settings.ports`.
fn publishes(
    c: &Corral,
    container: &str,
    host_port: u16,
    container_port: u16,
    proto: &str,
) -> bool {
    let info = c.inspect_container(container);
    info.raw
        .pointer("/network_settings/ports")
        .and_then(|p| p.as_array())
        .is_some_and(|ports| {
            ports.iter().any(|p| {
                p.get("host_port").and_then(|v| v.as_u64()) == Some(u64::from(host_port))
                    && p.get("container_port").and_then(|v| v.as_u64())
                        == Some(u64::from(container_port))
                    && p.get("protocol").and_then(|v| v.as_str()) == Some(proto)
            })
        })
}

// ---------------------------------------------------------------------------------------------
// reachability

#[test]
fn containers_on_a_network_reach_each_other_by_name_and_alias_and_no_other_network_reaches_them() {
    let test = "containers_on_a_network_reach_each_other_by_name_and_alias_and_no_other_network_reaches_them";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let Some(py) = python_binds(test) else {
        return;
    };
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n1 = nets.create(&unique_name("nt"), 24, &[]);
    let n2 = nets.create(&unique_name("nt"), 24, &[]);
    let scripts = c.path("py");
    write_python_scripts(&scripts);
    let scripts_bind = format!("{}:/py:ro", path_str(&scripts));

    let (a, b, alias) = (unique_name("a"), unique_name("b"), unique_name("alias"));
    for (name, extra) in [(&a, vec!["--network-alias", alias.as_str()]), (&b, vec![])] {
        let mut flags: Vec<&str> = vec!["--network", &n1.name, "-v", &scripts_bind];
        flags.extend(py.iter().map(String::as_str));
        flags.extend(extra);
        let serve =
            format!("nc -ll -p 7000 -e echo pong-{name} & exec {HOST_PYTHON} /py/udp_echo.py 7001");
        run_detached(&c, &mut guard, name, &flags, &["sh", "-c", &serve]);
    }
    let a_ip = ip_on(&c.inspect_container(&a), &n1.name);
    assert!(n1.holds(a_ip), "{a} got {a_ip}, outside {}", n1.subnet);

    // TCP, both ways by name, and by alias.
    assert_tcp_reaches(&c, &b, &a, 7000, &format!("pong-{a}"));
    assert_tcp_reaches(&c, &a, &b, 7000, &format!("pong-{b}"));
    assert_tcp_reaches(&c, &b, &alias, 7000, &format!("pong-{a}"));

    // UDP by name and by alias.
    for target in [&a, &alias] {
        let out = exec(
            &c,
            &b,
            &[HOST_PYTHON, "/py/udp_send.py", target, "7001", "ping"],
        );
        assert!(
            stdout_of(&out).contains("echo:ping"),
            "{b} -> {target}:7001/udp: {}",
            describe(&out)
        );
    }

    // The endpoint records the alias.
    let info = c.network_inspect(&n1.name);
    let ep = info
        .endpoint_of(&a)
        .unwrap_or_else(|| panic!("network inspect {} lists no {a}: {:#}", n1.name, info.raw));
    assert!(
        ep.aliases.contains(&alias),
        "aliases of {a}: {:?}",
        ep.aliases
    );
    assert_eq!(ep.ip, Some(a_ip));

    // A container on another network reaches neither port by address, quickly.
    let a_ip_s = a_ip.to_string();
    let out = run_rm(
        &c,
        &["--network", &n2.name],
        &["nc", "-w", "2", &a_ip_s, "7000"],
    );
    assert!(
        !stdout_of(&out).contains("pong"),
        "a container on {} reached {a} on {}: {}",
        n2.name,
        n1.name,
        describe(&out)
    );
    let mut flags: Vec<&str> = vec!["--network", &n2.name, "-v", &scripts_bind];
    flags.extend(py.iter().map(String::as_str));
    let out = run_rm(
        &c,
        &flags,
        &[HOST_PYTHON, "/py/udp_send.py", &a_ip_s, "7001", "x"],
    );
    assert!(
        !stdout_of(&out).contains("echo:"),
        "a container on {} reached {a}:7001/udp: {}",
        n2.name,
        describe(&out)
    );

    remove_and_check(&c, &[&a, &b], &[&n1, &n2]);
}

#[test]
fn container_sees_its_address_route_hosts_and_resolver_on_each_network() {
    let test = "container_sees_its_address_route_hosts_and_resolver_on_each_network";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n1 = nets.create(&unique_name("nt"), 24, &[]);
    let n2 = nets.create(&unique_name("nt"), 24, &[]);
    let (x, y, alias) = (unique_name("x"), unique_name("y"), unique_name("al"));
    let both = format!("{},{}", n1.name, n2.name);
    run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &both, "--network-alias", &alias],
        &["sleep", "300"],
    );
    // NET_RAW for busybox ping (corral's default capabilities, podman's, lack it).
    run_detached(
        &c,
        &mut guard,
        &y,
        &["--network", &n2.name, "--cap-add", "NET_RAW"],
        &["sleep", "300"],
    );

    let info = c.inspect_container(&x);
    let att = attachments(&info);
    assert_eq!(att.len(), 2, "x should be on two networks: {att:?}");
    let ip1 = ip_on(&info, &n1.name);
    let ip2 = ip_on(&info, &n2.name);
    assert!(
        n1.holds(ip1) && n2.holds(ip2),
        "{ip1} in {}, {ip2} in {}",
        n1.subnet,
        n2.subnet
    );
    for (net, a) in &att {
        let n = if net == &n1.name { &n1 } else { &n2 };
        assert_eq!(a.gateway, Some(n.gateway), "gateway on {net}");
        assert!(
            a.aliases.contains(&alias),
            "aliases on {net}: {:?}",
            a.aliases
        );
        assert!(!a.mac.is_empty(), "mac on {net}");
        if let Some(p) = a.prefix {
            assert_eq!(p, 24, "prefix on {net}");
        }
    }

    // Inside: eth0 on the first network, eth1 on the second, the default route via the
    // first's gateway, its own address and hostname in /etc/hosts, the first's gateway as
    // resolver.
    let addrs = stdout_of(&exec(&c, &x, &["ip", "-4", "-o", "addr", "show"]));
    let eth0 = addrs.lines().find(|l| l.contains(" eth0 ")).unwrap_or("");
    assert!(
        eth0.contains(&format!("inet {ip1}/24")),
        "eth0 should hold {ip1}/24:\n{addrs}"
    );
    let eth1 = addrs.lines().find(|l| l.contains(" eth1 ")).unwrap_or("");
    assert!(
        eth1.contains(&format!("inet {ip2}/24")),
        "eth1 should hold {ip2}/24:\n{addrs}"
    );
    let routes = stdout_of(&exec(&c, &x, &["ip", "route"]));
    assert!(
        routes.contains(&format!("default via {} dev eth0", n1.gateway)),
        "default route via {}:\n{routes}",
        n1.gateway
    );
    let hostname = stdout_of(&exec(&c, &x, &["hostname"])).trim().to_owned();
    let hosts = stdout_of(&exec(&c, &x, &["cat", "/etc/hosts"]));
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&ip1.to_string())
                && l.split_whitespace().any(|w| w == hostname)),
        "/etc/hosts should map {ip1} to {hostname}:\n{hosts}"
    );
    let resolv = stdout_of(&exec(&c, &x, &["cat", "/etc/resolv.conf"]));
    assert!(
        resolv
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["nameserver", &n1.gateway.to_string()]),
        "/etc/resolv.conf should name {}:\n{resolv}",
        n1.gateway
    );

    // The embedded DNS server of n2 answers x's name and alias with its n2 address, to y.
    let y_resolv = stdout_of(&exec(&c, &y, &["cat", "/etc/resolv.conf"]));
    assert!(
        y_resolv.contains(&format!("nameserver {}", n2.gateway)),
        "{y_resolv}"
    );
    for name in [&x, &alias] {
        let out = exec(&c, &y, &["nslookup", name, &n2.gateway.to_string()]);
        assert!(
            stdout_of(&out).contains(&ip2.to_string()),
            "nslookup {name} on {} should answer {ip2}: {}",
            n2.name,
            describe(&out)
        );
    }
    let ping = exec(&c, &y, &["ping", "-c", "1", "-W", "2", &x]);
    assert!(
        ping.status.success(),
        "y pings x by name: {}",
        describe(&ping)
    );

    remove_and_check(&c, &[&x, &y], &[&n1, &n2]);
}

#[test]
fn connect_and_disconnect_change_a_running_containers_interfaces() {
    let test = "connect_and_disconnect_change_a_running_containers_interfaces";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n1 = nets.create(&unique_name("nt"), 24, &[]);
    let n2 = nets.create(&unique_name("nt"), 24, &[]);
    let (x, y, alias) = (unique_name("x"), unique_name("y"), unique_name("al"));
    run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &n1.name],
        &["sh", "-c", &format!("exec nc -ll -p 7000 -e echo pong-{x}")],
    );
    run_detached(
        &c,
        &mut guard,
        &y,
        &["--network", &n2.name],
        &["sleep", "300"],
    );

    c.ok(&["network", "connect", "--alias", &alias, &n2.name, &x]);
    let ip2 = ip_on(&c.inspect_container(&x), &n2.name);
    let addrs = stdout_of(&exec(&c, &x, &["ip", "-4", "-o", "addr", "show"]));
    let eth1 = addrs.lines().find(|l| l.contains(" eth1 ")).unwrap_or("");
    assert!(
        eth1.contains(&format!("inet {ip2}/")),
        "after connect, eth1 holds {ip2}:\n{addrs}"
    );
    assert_tcp_reaches(&c, &y, &x, 7000, &format!("pong-{x}"));
    assert_tcp_reaches(&c, &y, &alias, 7000, &format!("pong-{x}"));

    c.ok(&["network", "disconnect", &n2.name, &x]);
    let addrs = stdout_of(&exec(&c, &x, &["ip", "-o", "link", "show"]));
    assert!(
        !addrs.contains("eth1"),
        "after disconnect, no eth1:\n{addrs}"
    );
    assert!(
        c.network_inspect(&n2.name).endpoint_of(&x).is_none(),
        "after disconnect, {} still lists {x}",
        n2.name
    );
    assert!(
        attachments(&c.inspect_container(&x))
            .iter()
            .all(|(n, _)| n != &n2.name),
        "after disconnect, inspect still shows {x} on {}",
        n2.name
    );
    let out = tcp_from(&c, &y, &ip2.to_string(), 7000);
    assert!(
        !stdout_of(&out).contains("pong"),
        "{y} still reaches {x} at {ip2}"
    );

    remove_and_check(&c, &[&x, &y], &[&n1, &n2]);
}

// ---------------------------------------------------------------------------------------------
// published ports

#[test]
fn published_tcp_ports_serve_http_on_loopback_and_the_host_address() {
    let test = "published_tcp_ports_serve_http_on_loopback_and_the_host_address";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let Some(host_ip) = host_primary_ipv4() else {
        report_skip(test, "the host has no non-loopback IPv4 address");
        return;
    };
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let web = unique_name("web");
    let token = unique_token();
    let port = free_tcp_port();
    let range = free_tcp_port_pair();
    let p_one = format!("{port}:80");
    let p_range = format!("{range}-{}:80-81", range + 1);
    let serve = format!(
        "mkdir -p /www /www81 && echo web80-{token} > /www/index.html && \
         echo web81-{token} > /www81/index.html && httpd -p 81 -h /www81 && \
         exec httpd -f -p 80 -h /www"
    );
    run_detached(
        &c,
        &mut guard,
        &web,
        &["--network", &n.name, "-p", &p_one, "-p", &p_range],
        &["sh", "-c", &serve],
    );

    let cases = [
        (Ipv4Addr::LOCALHOST, port, "web80"),
        (host_ip, port, "web80"),
        (Ipv4Addr::LOCALHOST, range, "web80"),
        (Ipv4Addr::LOCALHOST, range + 1, "web81"),
    ];
    for (ip, p, want) in cases {
        let addr = SocketAddr::from((ip, p));
        let got = http_get_ok(addr, "/index.html", SERVER_START);
        let want = format!("{want}-{token}");
        assert!(
            matches!(&got, Ok(text) if text.contains(&want)),
            "GET http://{addr}/index.html should return {want}: {got:?}"
        );
    }
    for (hp, cp) in [(port, 80), (range, 80), (range + 1, 81)] {
        assert!(
            publishes(&c, &web, hp, cp, "tcp"),
            "inspect {web} should list {hp}->{cp}/tcp: {:#}",
            c.inspect_container(&web).raw["network_settings"]
        );
    }
    let ep_ports = c
        .network_inspect(&n.name)
        .endpoint_of(&web)
        .map(|e| e.raw["ports"].clone());
    assert!(
        ep_ports
            .as_ref()
            .and_then(|p| p.as_array())
            .is_some_and(|p| p.len() == 3),
        "network inspect should list 3 ports of {web}: {ep_ports:?}"
    );

    remove_and_check(&c, &[&web], &[&n]);
    // Unpublished: nothing answers on the host port any more, and no rule names it.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(
        corral_e2e::networks::http_get(addr, "/", Duration::from_secs(1)).is_err(),
        "{addr} still answers after the container is gone"
    );
    assert!(
        !nft_mentions_port(port),
        "nft table ip corral still mentions port {port}:\n{}",
        corral_nft_table()
    );
}

/// Whether `nft list table ip corral` has `port` as a word.
fn nft_mentions_port(port: u16) -> bool {
    let p = port.to_string();
    corral_nft_table()
        .split(|ch: char| !ch.is_ascii_digit())
        .any(|w| w == p)
}

#[test]
fn published_udp_port_answers_on_loopback_and_the_host_address() {
    let test = "published_udp_port_answers_on_loopback_and_the_host_address";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let Some(py) = python_binds(test) else {
        return;
    };
    let Some(host_ip) = host_primary_ipv4() else {
        report_skip(test, "the host has no non-loopback IPv4 address");
        return;
    };
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let scripts = c.path("py");
    write_python_scripts(&scripts);
    let scripts_bind = format!("{}:/py:ro", path_str(&scripts));
    let echo = unique_name("echo");
    let port = free_udp_port();
    let publish = format!("{port}:5353/udp");
    let mut flags: Vec<&str> = vec!["--network", &n.name, "-p", &publish, "-v", &scripts_bind];
    flags.extend(py.iter().map(String::as_str));
    run_detached(
        &c,
        &mut guard,
        &echo,
        &flags,
        &[HOST_PYTHON, "/py/udp_echo.py", "5353"],
    );
    for ip in [Ipv4Addr::LOCALHOST, host_ip] {
        let addr = SocketAddr::from((ip, port));
        let reply = udp_exchange(addr, b"hello", SERVER_START);
        assert_eq!(
            reply.as_deref(),
            Some(&b"echo:hello"[..]),
            "a datagram to {addr} should come back from the container"
        );
    }
    assert!(
        publishes(&c, &echo, port, 5353, "udp"),
        "inspect lists {port}->5353/udp"
    );

    remove_and_check(&c, &[&echo], &[&n]);
    assert!(
        udp_exchange(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            b"x",
            Duration::from_secs(1)
        )
        .is_none(),
        "port {port}/udp still answers after the container is gone"
    );
}

// ---------------------------------------------------------------------------------------------
// the outside: NAT and internal networks

#[test]
fn outbound_connections_are_masqueraded_to_the_hosts_address() {
    let test = "outbound_connections_are_masqueraded_to_the_hosts_address";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    if python_binds(test).is_none() {
        return;
    }
    let c = world();
    let outside = Outside::new();
    let listener = outside.listen_tcp(8080, "hello-outside");
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let x = unique_name("x");
    run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &n.name],
        &["sleep", "300"],
    );
    let x_ip = ip_on(&c.inspect_container(&x), &n.name);

    let out = tcp_from(&c, &x, &outside.remote.to_string(), 8080);
    assert!(
        stdout_of(&out).contains("hello-outside"),
        "{x} should reach the outside host {}: {}",
        outside.remote,
        describe(&out)
    );
    let peer = listener.next_peer(Duration::from_secs(5));
    assert_eq!(
        peer,
        Some(outside.host_addr),
        "the outside host should see the host's address {} (masquerade), not {x_ip}",
        outside.host_addr
    );

    remove_and_check(&c, &[&x], &[&n]);
}

#[test]
fn internal_network_has_no_way_out_while_a_normal_one_does() {
    let test = "internal_network_has_no_way_out_while_a_normal_one_does";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    if python_binds(test).is_none() {
        return;
    }
    let c = world();
    let outside = Outside::new();
    let listener = outside.listen_tcp(8080, "hello-outside");
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let internal = nets.create(&unique_name("nti"), 24, &["--internal"]);
    let normal = nets.create(&unique_name("nt"), 24, &[]);
    assert!(
        c.network_inspect(&internal.name).internal,
        "inspect shows internal: true"
    );
    let (i, o) = (unique_name("in"), unique_name("out"));
    run_detached(
        &c,
        &mut guard,
        &i,
        &["--network", &internal.name],
        &["sleep", "300"],
    );
    run_detached(
        &c,
        &mut guard,
        &o,
        &["--network", &normal.name],
        &["sleep", "300"],
    );

    let routes = stdout_of(&exec(&c, &i, &["ip", "route"]));
    assert!(
        !routes.contains("default"),
        "no default route on an internal network:\n{routes}"
    );
    let remote = outside.remote.to_string();
    let host_side = outside.host_addr.to_string();
    for target in [&remote, &host_side] {
        let out = tcp_from(&c, &i, target, 8080);
        assert!(
            !stdout_of(&out).contains("hello-outside"),
            "{i} on internal {} reached {target}: {}",
            internal.name,
            describe(&out)
        );
    }
    // Not even by adding a route itself: the host does not forward for it.
    let gw = internal.gateway.to_string();
    let _ = exec(&c, &i, &["ip", "route", "add", "default", "via", &gw]);
    let out = tcp_from(&c, &i, &remote, 8080);
    assert!(
        !stdout_of(&out).contains("hello-outside"),
        "{i} on internal {} reached the outside through the gateway: {}",
        internal.name,
        describe(&out)
    );
    assert_eq!(
        listener.peers_so_far(),
        Vec::<Ipv4Addr>::new(),
        "no connection arrived"
    );

    let out = tcp_from(&c, &o, &remote, 8080);
    assert!(
        stdout_of(&out).contains("hello-outside"),
        "{o} on {} should reach the outside: {}",
        normal.name,
        describe(&out)
    );
    assert_eq!(
        listener.next_peer(Duration::from_secs(5)),
        Some(outside.host_addr)
    );

    remove_and_check(&c, &[&i, &o], &[&internal, &normal]);
}

// ---------------------------------------------------------------------------------------------
// bad input

#[test]
fn overlapping_and_invalid_network_definitions_are_refused() {
    let test = "overlapping_and_invalid_network_definitions_are_refused";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let n1 = nets.create(&unique_name("nt"), 24, &[]);
    let other = unique_name("nt");
    nets.track(&other);

    let inner = n1.subnet.replace("/24", "/25");
    let err = c.fail_125(&["network", "create", "--subnet", &inner, &other]);
    assert!(
        err.contains(&n1.name) && err.contains("overlap"),
        "an overlapping subnet should name {}: {err}",
        n1.name
    );
    for bad in [
        "10.124.300.0/24",
        "10.124.1.0/33",
        "not-a-cidr",
        "10.124.1.5/24x",
    ] {
        let err = c.fail_125(&["network", "create", "--subnet", bad, &other]);
        assert!(err.contains("subnet"), "--subnet {bad}: {err}");
    }
    let free = next_test_subnet(24);
    let err = c.fail_125(&[
        "network",
        "create",
        "--subnet",
        &free,
        "--gateway",
        "10.99.0.1",
        &other,
    ]);
    assert!(
        err.contains("gateway"),
        "a gateway outside the subnet: {err}"
    );
    let err = c.fail_125(&["network", "create", &n1.name]);
    assert!(err.contains("exists"), "a duplicate name: {err}");

    let names: Vec<String> = c
        .network_ls()
        .iter()
        .filter_map(|n| n.get("name")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        vec![n1.name.clone()],
        "only the first network exists"
    );
    remove_and_check(&c, &[], &[&n1]);
}

#[test]
fn network_in_use_is_refused_unless_forced() {
    let test = "network_in_use_is_refused_unless_forced";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let x = unique_name("x");
    run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &n.name],
        &["sleep", "300"],
    );

    let err = c.fail_125(&["network", "rm", &n.name]);
    assert!(err.contains(&x), "the refusal should name {x}: {err}");
    assert!(
        c.network_inspect(&n.name).endpoint_of(&x).is_some(),
        "still connected"
    );
    assert_eq!(
        bridge_ports(&n.bridge).len(),
        1,
        "its veth is still on the bridge"
    );

    c.ok(&["network", "rm", "-f", &n.name]);
    assert_network_gone(&n);
    assert!(
        c.inspect_container(&x).running,
        "{x} keeps running, disconnected"
    );
    let links = stdout_of(&exec(&c, &x, &["ip", "-o", "link", "show"]));
    assert!(!links.contains("eth0"), "{x} lost its eth0:\n{links}");
    c.ok(&["rm", "-f", &x]);
}

#[test]
fn taken_host_port_is_refused_and_leaves_nothing() {
    let test = "taken_host_port_is_refused_and_leaves_nothing";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let holder = TcpListener::bind(("0.0.0.0", 0)).expect("bind a port");
    let port = holder.local_addr().expect("local addr").port();
    let x = unique_name("x");
    guard.track(&x);
    let publish = format!("{port}:80");
    let err = c.fail_125(&[
        "run",
        "-d",
        "--name",
        &x,
        "--network",
        &n.name,
        "-p",
        &publish,
        BUSYBOX_IMAGE,
        "sleep",
        "300",
    ]);
    assert!(
        err.contains(&port.to_string()),
        "the refusal should name port {port}: {err}"
    );
    assert_refused_run_left_nothing(&c, &x, &n);
    assert!(
        !nft_mentions_port(port),
        "no rule for {port}:\n{}",
        corral_nft_table()
    );
    drop(holder);
    remove_and_check(&c, &[], &[&n]);
}

#[test]
fn invalid_port_specs_are_refused_and_leave_nothing() {
    let test = "invalid_port_specs_are_refused_and_leave_nothing";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    for spec in [
        "abc",
        "70000:80",
        "8080:0",
        "8080:80/sctp",
        "9000-9002:80-81",
        "1.2.3:80:80",
    ] {
        let x = unique_name("x");
        guard.track(&x);
        let err = c.fail_125(&[
            "run",
            "-d",
            "--name",
            &x,
            "--network",
            &n.name,
            "-p",
            spec,
            BUSYBOX_IMAGE,
            "sleep",
            "300",
        ]);
        assert!(
            err.contains("port"),
            "-p {spec}: the refusal should say port: {err}"
        );
        assert_refused_run_left_nothing(&c, &x, &n);
    }
    remove_and_check(&c, &[], &[&n]);
}

#[test]
fn exhausted_subnet_refuses_the_next_container_and_leaves_nothing() {
    let test = "exhausted_subnet_refuses_the_next_container_and_leaves_nothing";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    // A /30: network, gateway, one address, broadcast.
    let n = nets.create(&unique_name("nt"), 30, &[]);
    let (x, y) = (unique_name("x"), unique_name("y"));
    run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &n.name],
        &["sleep", "300"],
    );
    let x_ip = ip_on(&c.inspect_container(&x), &n.name);
    assert!(n.holds(x_ip), "{x_ip} in {}", n.subnet);
    guard.track(&y);
    let err = c.fail_125(&[
        "run",
        "-d",
        "--name",
        &y,
        "--network",
        &n.name,
        BUSYBOX_IMAGE,
        "sleep",
        "300",
    ]);
    assert!(
        err.contains("no free address") || err.contains("address"),
        "the refusal should say the network has no free address: {err}"
    );
    assert_refused_run_left_nothing(&c, &y, &n);
    assert!(c.inspect_container(&x).running, "{x} is unaffected");
    remove_and_check(&c, &[&x], &[&n]);
}

// ---------------------------------------------------------------------------------------------
// concurrency, listing, the default network

#[test]
fn twenty_concurrent_starts_get_distinct_addresses() {
    let test = "twenty_concurrent_starts_get_distinct_addresses";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("nt"), 24, &[]);
    let names: Vec<String> = (0..20).map(|i| unique_name(&format!("c{i}"))).collect();
    for name in &names {
        guard.track(name);
    }
    let outputs: Vec<Output> = thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let (c, net) = (&c, &n.name);
                s.spawn(move || {
                    c.cmd(&[
                        "run",
                        "-d",
                        "--name",
                        name,
                        "--network",
                        net,
                        BUSYBOX_IMAGE,
                        "sleep",
                        "300",
                    ])
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (name, out) in names.iter().zip(&outputs) {
        assert!(out.status.success(), "run {name}: {}", describe(out));
    }
    let mut ips: Vec<Ipv4Addr> = names
        .iter()
        .map(|name| ip_on(&c.inspect_container(name), &n.name))
        .collect();
    assert!(
        ips.iter().all(|ip| n.holds(*ip)),
        "addresses outside {}: {ips:?}",
        n.subnet
    );
    ips.sort();
    ips.dedup();
    assert_eq!(
        ips.len(),
        20,
        "20 containers should hold 20 addresses: {ips:?}"
    );
    assert_eq!(c.network_inspect(&n.name).endpoints.len(), 20);
    assert_eq!(bridge_ports(&n.bridge).len(), 20, "20 veths on the bridge");

    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    remove_and_check(&c, &refs, &[&n]);
}

#[test]
fn network_ls_inspect_and_prune_report_and_remove_unused_networks() {
    let test = "network_ls_inspect_and_prune_report_and_remove_unused_networks";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let unused = nets.create(&unique_name("nt"), 24, &[]);
    let used = nets.create(&unique_name("nt"), 24, &["--internal"]);
    let x = unique_name("x");
    let x_id = run_detached(
        &c,
        &mut guard,
        &x,
        &["--network", &used.name],
        &["sleep", "300"],
    );

    let listed = c.network_ls();
    for (n, count, internal) in [(&unused, 0, false), (&used, 1, true)] {
        let row = listed
            .iter()
            .find(|r| r["name"] == n.name.as_str())
            .unwrap_or_else(|| panic!("network ls --json lacks {}: {listed:?}", n.name));
        for key in [
            "name",
            "id",
            "subnet",
            "gateway",
            "internal",
            "bridge",
            "created",
            "containers",
        ] {
            assert!(
                row.get(key).is_some(),
                "ls row of {} lacks {key}: {row}",
                n.name
            );
        }
        assert_eq!(
            row["containers"].as_u64(),
            Some(count),
            "containers of {}",
            n.name
        );
        assert_eq!(row["internal"].as_bool(), Some(internal));
        assert_eq!(row["subnet"].as_str(), Some(n.subnet.as_str()));
        assert_eq!(row["bridge"].as_str(), Some(n.bridge.as_str()));
        assert!(
            n.bridge.starts_with("crl"),
            "bridge {} is prefixed crl",
            n.bridge
        );
    }
    let quiet = c.ok(&["network", "ls", "-q"]);
    let mut q: Vec<&str> = quiet
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    q.sort_unstable();
    let mut want = vec![unused.name.as_str(), used.name.as_str()];
    want.sort_unstable();
    assert_eq!(q, want, "network ls -q prints the names");
    let table = c.ok(&["network", "ls"]);
    assert!(
        table.contains(&unused.name) && table.contains(&used.subnet),
        "{table}"
    );

    let info = c.network_inspect(&used.name);
    assert_eq!(info.name, used.name);
    assert!(!info.id.is_empty());
    assert_eq!(info.gateway, Some(used.gateway));
    let ep = info
        .endpoint_of(&x)
        .unwrap_or_else(|| panic!("endpoints: {:#}", info.raw));
    assert_eq!(ep.owner, x_id, "the endpoint's owner is the container's id");
    assert!(
        !ep.mac.is_empty() && ep.ip.is_some_and(|ip| used.holds(ip)),
        "{:#}",
        ep.raw
    );
    let err = c.fail_125(&["network", "inspect", &unique_name("nope")]);
    assert!(err.contains("nope"), "an unknown network is named: {err}");

    c.ok(&["network", "prune"]);
    let left: Vec<String> = c
        .network_ls()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        left,
        vec![used.name.clone()],
        "prune removes only the unused network"
    );
    assert_network_gone(&unused);
    assert!(
        !links_of_bridge(&used.bridge).is_empty(),
        "the used network keeps its bridge"
    );

    remove_and_check(&c, &[&x], &[&used]);
}

/// Serializes the tests that use the default network: its bridge and subnet are the host's,
/// shared by every root.
static DEFAULT_NETWORK_LOCK: Mutex<()> = Mutex::new(());

/// `run --rm` without `--network` in `c`: eth0 in the default subnet, the default route and
/// the resolver on its gateway; `--network none` gives only `lo`.
fn assert_default_network_serves(c: &Corral, root: &str) {
    let out = run_rm_ok(
        c,
        &[],
        &[
            "sh",
            "-c",
            "ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf",
        ],
    );
    assert!(
        out.contains("inet 10.120."),
        "{root}: eth0 in {DEFAULT_SUBNET}:\n{out}"
    );
    assert!(
        out.contains(&format!("default via {DEFAULT_GATEWAY} dev eth0")),
        "{root}: default route via {DEFAULT_GATEWAY}:\n{out}"
    );
    assert!(
        out.contains(&format!("nameserver {DEFAULT_GATEWAY}")),
        "{root}: resolver {DEFAULT_GATEWAY}:\n{out}"
    );
    let info = c.network_inspect(DEFAULT_NETWORK);
    assert_eq!(info.subnet, DEFAULT_SUBNET);
    assert_eq!(info.gateway, Some(DEFAULT_GATEWAY));
    assert_eq!(info.bridge, DEFAULT_BRIDGE);
    assert!(
        info.endpoints.is_empty(),
        "{root}: run --rm left an endpoint: {:#}",
        info.raw
    );
    let none = run_rm_ok(c, &["--network", "none"], &["ip", "-o", "link", "show"]);
    assert!(
        none.lines().count() == 1 && none.contains(": lo:"),
        "{root}: --network none: only lo:\n{none}"
    );
}

#[test]
fn default_network_serves_containers_without_network_flag_in_every_root() {
    let test = "default_network_serves_containers_without_network_flag_in_every_root";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let _lock = DEFAULT_NETWORK_LOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // The default network is one per host (`Corral::with_default_network`): removing it
    // deletes its bridge, so only when this test made it.
    if !links_of_bridge(DEFAULT_BRIDGE).is_empty() {
        report_skip(
            test,
            &format!("{DEFAULT_BRIDGE} exists already (another root's); not touching it"),
        );
        return;
    }
    // Two roots in turn, as a test suite runs them: each gets the default network, and
    // removing it leaves the host as it was for the next.
    for round in ["first root", "second root"] {
        let mut c = Corral::with_default_network();
        c.timeout = COMMAND_TIMEOUT;
        c.busybox_image();
        let guard = ContainerGuard::new(&c);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_default_network_serves(&c, round);
        }));
        drop(guard);
        let rm = c.cmd(&["network", "rm", "-f", DEFAULT_NETWORK]);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        assert!(
            rm.status.success(),
            "{round}: network rm {DEFAULT_NETWORK}: {}",
            describe(&rm)
        );
        let left = links_of_bridge(DEFAULT_BRIDGE);
        assert!(
            left.is_empty(),
            "{round}: the default network's links are left: {left:?}"
        );
        let default = TestNetwork {
            name: DEFAULT_NETWORK.to_owned(),
            subnet: DEFAULT_SUBNET.to_owned(),
            gateway: DEFAULT_GATEWAY,
            bridge: DEFAULT_BRIDGE.to_owned(),
        };
        assert_network_gone(&default);
    }
}

#[test]
fn network_flag_accepts_repeats_and_host() {
    let test = "network_flag_accepts_repeats_and_host";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let n1 = nets.create(&unique_name("nt"), 24, &[]);
    let n2 = nets.create(&unique_name("nt"), 24, &[]);
    let out = run_rm_ok(
        &c,
        &["--network", &n1.name, "--network", &n2.name],
        &["ip", "-4", "-o", "addr", "show"],
    );
    assert!(
        out.contains(" eth0 ") && out.contains(" eth1 "),
        "two interfaces:\n{out}"
    );
    // The host's links change while other tests run: compare with one that does not.
    let bridge = format!(": {}:", n1.bridge);
    let out = run_rm_ok(&c, &["--network", "host"], &["ip", "-o", "link", "show"]);
    assert!(
        out.contains(&bridge),
        "--network host sees the host's links ({}):\n{out}",
        n1.bridge
    );
    let err = c.fail_125(&[
        "run",
        "--rm",
        "--network",
        &unique_name("nope"),
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert!(err.contains("nope"), "an unknown network is named: {err}");
    remove_and_check(&c, &[], &[&n1, &n2]);
}

#[test]
fn ip_and_mac_address_flags_fix_the_containers_address() {
    let test = "ip_and_mac_address_flags_fix_the_containers_address";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let n = nets.create(&unique_name("fixed"), 24, &[]);
    let (base, _) = n.subnet.split_once('/').unwrap();
    let base: Ipv4Addr = base.parse().unwrap();
    let want = Ipv4Addr::from(u32::from(base) + 77);
    let name = unique_name("fixed");
    let ip = want.to_string();
    run_detached(
        &c,
        &mut guard,
        &name,
        &[
            "--network",
            &n.name,
            "--ip",
            &ip,
            "--mac-address",
            "02:42:c0:ff:ee:01",
        ],
        &["sleep", "60"],
    );
    let shown = c.ok(&["exec", &name, "ip", "-o", "addr", "show", "eth0"]);
    assert!(
        shown.contains(&format!("{ip}/24")),
        "eth0 has {ip}: {shown}"
    );
    let link = c.ok(&["exec", &name, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(link.trim(), "02:42:c0:ff:ee:01");
    assert_eq!(
        ip_on(&c.inspect_container(&name), &n.name),
        want,
        "inspect shows the fixed address"
    );
    // Taken, outside the subnet, without a corral network, a bad MAC: 125, nothing made.
    for (flags, why) in [
        (
            vec!["--network", n.name.as_str(), "--ip", ip.as_str()],
            "already in use",
        ),
        (
            vec!["--network", n.name.as_str(), "--ip", "192.0.2.1"],
            "192.0.2.1",
        ),
        (vec!["--network", "none", "--ip", ip.as_str()], "--ip"),
        (
            vec![
                "--network",
                n.name.as_str(),
                "--mac-address",
                "01:00:5e:00:00:01",
            ],
            "multicast",
        ),
        (
            vec!["--network", n.name.as_str(), "--mac-address", "02:42"],
            "--mac-address",
        ),
    ] {
        let out = run_rm(&c, &flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{flags:?}: {}",
            describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(why), "{flags:?}: {err}");
    }
}

#[test]
fn network_options_set_mtu_and_bridge_name_and_disable_dns() {
    let test = "network_options_set_mtu_and_bridge_name_and_disable_dns";
    if skip_unless_tools(test, TOOLS) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut guard = ContainerGuard::new(&c);
    let bridge = format!("crlt{}", &unique_token()[..8]);
    let n = nets.create(
        &unique_name("opts"),
        24,
        &[
            "-o",
            "mtu=1400",
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            "--disable-dns",
        ],
    );
    assert_eq!(n.bridge, bridge, "the bridge has the name asked for");
    let link = corral_e2e::containers::host_output("ip", &["-o", "link", "show", &bridge]);
    assert!(link.contains("mtu 1400"), "the bridge's MTU: {link}");
    let name = unique_name("mtu");
    run_detached(
        &c,
        &mut guard,
        &name,
        &["--network", &n.name],
        &["sleep", "60"],
    );
    let eth0 = c.ok(&["exec", &name, "ip", "-o", "link", "show", "eth0"]);
    assert!(
        eth0.contains("mtu 1400"),
        "the container's interface has the network's MTU: {eth0}"
    );
    let resolv = c.ok(&["exec", &name, "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert!(
        !servers.is_empty(),
        "--disable-dns: the host's resolvers: {resolv}"
    );
    assert!(
        !servers.contains(&n.gateway.to_string().as_str()),
        "--disable-dns: no DNS server on the gateway: {resolv}"
    );
    assert!(
        servers.iter().all(|s| !s.starts_with("127.")),
        "a loopback resolver is unreachable from the container: {resolv}"
    );
    assert!(
        corral_e2e::checks::live_processes_with(&["__dns", &n.name]).is_empty(),
        "--disable-dns: no DNS server process for the network"
    );
    let shown = c.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Options}} {{.DNSEnabled}}",
        &n.name,
    ]);
    assert_eq!(
        shown.trim(),
        format!("{{\"com.docker.network.bridge.name\":\"{bridge}\",\"mtu\":\"1400\"}} false"),
        "inspect shows the options as given (docker's Options)"
    );

    // Bad options: 125 naming the option, no network and no device made.
    for (opt, why) in [
        ("foo=1", "foo"),
        ("mtu=10", "68 to 65535"),
        ("com.docker.network.bridge.name=lo", "exists on this host"),
        (
            &format!("com.docker.network.bridge.name={bridge}") as &str,
            "exists on this host",
        ),
    ] {
        let bad = unique_name("badopt");
        let out = c.cmd(&["network", "create", "-o", opt, &bad]);
        assert_eq!(out.status.code(), Some(125), "-o {opt}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "-o {opt}: the message says {why:?}: {}",
            describe(&out)
        );
        assert!(
            !c.ok(&["network", "ls", "-q"]).lines().any(|l| l == bad),
            "-o {opt}: no network {bad} made"
        );
    }
    c.ok(&["rm", "-f", &name]);
    c.ok(&["network", "rm", &n.name]);
    assert_network_gone(&n);
}
