//! Kernel tests of corral's networks, as root: real bridges, veth pairs in real network
//! namespaces, nftables rules, packets. Subnets are in 10.123.0.0/16, one per test.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{chain, firewall_objects_with, host_links_named, Netns, TestNet};
use corral_net::{ConnectOptions, EndpointKind, NetError, PortSpec};

fn opts(name: &str) -> ConnectOptions {
    ConnectOptions {
        container_name: Some(name.into()),
        ..Default::default()
    }
}

#[test]
fn containers_on_one_network_reach_each_other_and_not_other_networks() {
    let t = TestNet::new("reach", "10.123.1.0/24", false);
    let (ns1, ns2, ns3) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
    let e1 = t
        .nets
        .connect(&t.name, "c1", ns1.file.as_fd(), &opts("one"))
        .unwrap();
    let e2 = t
        .nets
        .connect(&t.name, "c2", ns2.file.as_fd(), &opts("two"))
        .unwrap();
    assert_eq!(e1.ip, "10.123.1.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(e2.ip, "10.123.1.3".parse::<Ipv4Addr>().unwrap());
    assert_eq!(e1.gateway, e1.dns_server);
    assert_eq!(e1.cidr(), "10.123.1.2/24");
    assert_eq!(e1.kind, EndpointKind::Veth);
    assert!(ns1
        .ip(&["-br", "addr", "show", "eth0"])
        .contains("10.123.1.2/24"));
    assert!(ns1.ip(&["route"]).contains("default via 10.123.1.1"));
    assert!(ns1.ip(&["-br", "link", "show", "eth0"]).contains(&e1.mac));

    // TCP from one namespace to the other, and ICMP to it and to the gateway.
    let l = ns2.listen("0.0.0.0:7000");
    let to2 = SocketAddr::from((e2.ip, 7000));
    assert!(ns1.can_connect(to2), "ns1 cannot reach {to2}");
    drop(l.accept().unwrap());
    assert!(ns1.ping(&e2.ip.to_string()), "ping ns1 -> ns2");
    assert!(ns1.ping("10.123.1.1"), "ping ns1 -> gateway");

    // A namespace on another network cannot reach them.
    let other = t.sibling("other", "10.123.2.0/24", false);
    let e3 = t
        .nets
        .connect(&other.name, "c3", ns3.file.as_fd(), &opts("three"))
        .unwrap();
    assert!(!ns3.can_connect(to2), "isolation: ns3 reached {to2}");
    assert!(!ns1.can_connect(SocketAddr::from((e3.ip, 7000))));

    let names = [
        t.bridge.as_str(),
        other.bridge.as_str(),
        &e1.host_ifname,
        &e2.host_ifname,
        &e3.host_ifname,
    ];
    assert_eq!(
        t.nets
            .leftovers()
            .unwrap()
            .links
            .iter()
            .filter(|l| names.contains(&l.as_str()))
            .count(),
        0
    );

    // Disconnect and remove leave nothing behind.
    for (net, owner) in [(&t.name, "c1"), (&t.name, "c2"), (&other.name, "c3")] {
        assert!(t.nets.disconnect(net, owner).unwrap().is_some());
        assert!(
            t.nets.disconnect(net, owner).unwrap().is_none(),
            "idempotent"
        );
    }
    t.nets.remove(&t.name, false).unwrap();
    t.nets.remove(&other.name, false).unwrap();
    assert_eq!(host_links_named(&names), Vec::<String>::new());
    let fw = firewall_objects_with(
        &t.nets,
        &[&t.bridge, &other.bridge, "10.123.1.", "10.123.2."],
    );
    assert_eq!(fw, Vec::<String>::new());
}

#[test]
fn internal_network_has_no_masquerade_and_no_default_route() {
    let t = TestNet::new("int", "10.123.3.0/24", true);
    let open = t.sibling("open", "10.123.4.0/24", false);
    let ns = Netns::new("i");
    let e = t
        .nets
        .connect(&t.name, "c1", ns.file.as_fd(), &opts("i"))
        .unwrap();
    assert!(e.internal);
    assert!(!ns.ip(&["route"]).contains("default"));
    let fw = t.nets.firewall().leftovers().unwrap();
    assert!(
        fw.contains(&format!("element bridges {}", t.bridge)),
        "{fw:?}"
    );
    assert!(
        !fw.iter()
            .any(|o| o.starts_with(&format!("element masq {}", t.bridge))),
        "{fw:?}"
    );
    assert!(
        fw.iter()
            .any(|o| o.starts_with(&format!("element masq {}", open.bridge))),
        "{fw:?}"
    );
    assert!(
        ns.ping("10.123.3.1"),
        "the gateway answers on an internal network"
    );
    let err = t
        .nets
        .connect(
            &t.name,
            "c2",
            ns.file.as_fd(),
            &ConnectOptions {
                ifname: "eth1".into(),
                ports: vec!["8080:80".parse().unwrap()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, NetError::InternalPorts(_)), "{err}");
    drop(open);
}

#[test]
fn published_port_reaches_the_container_from_the_host() {
    let t = TestNet::new("pub", "10.123.5.0/24", false);
    let ns = Netns::new("p");
    let listener = ns.listen("0.0.0.0:8080");
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec: PortSpec = format!("127.0.0.1:{host_port}:8080").parse().unwrap();
    let e = t
        .nets
        .connect(
            &t.name,
            "web",
            ns.file.as_fd(),
            &ConnectOptions {
                container_name: Some("web".into()),
                ports: vec![spec.clone(), "9090/udp".parse().unwrap()],
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(e.ports.len(), 2);
    assert_eq!(e.ports[0].host_port, host_port);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"hello").unwrap();
    });
    let mut c = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], host_port)),
        Duration::from_secs(2),
    )
    .unwrap_or_else(|e| panic!("connect to the published port: {e}"));
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello");
    server.join().unwrap();

    // Another endpoint cannot publish the same host port.
    let ns2 = Netns::new("p2");
    let err = t
        .nets
        .connect(
            &t.name,
            "web2",
            ns2.file.as_fd(),
            &ConnectOptions {
                ports: vec![spec],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        chain(&err).contains("already published by web"),
        "{}",
        chain(&err)
    );
    assert_eq!(
        t.nets
            .ipam(&t.nets.get(&t.name).unwrap())
            .owners()
            .unwrap()
            .len(),
        1,
        "undone"
    );

    t.nets.disconnect(&t.name, "web").unwrap();
    let fw = firewall_objects_with(&t.nets, &[&e.ip.to_string()]);
    assert_eq!(fw, Vec::<String>::new());
}

#[test]
fn failed_connect_undoes_everything() {
    let t = TestNet::new("undo", "10.123.6.0/24", false);
    let ns = Netns::new("u");
    // `lo` exists in every namespace: the veth peer cannot take its name.
    let err = t
        .nets
        .connect(
            &t.name,
            "c1",
            ns.file.as_fd(),
            &ConnectOptions {
                ifname: "lo".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(chain(&err).contains("create veth pair"), "{}", chain(&err));
    let n = t.nets.get(&t.name).unwrap();
    assert!(t.nets.ipam(&n).owners().unwrap().is_empty());
    assert!(t.nets.endpoint(&t.name, "c1").unwrap().is_none());
    let host = corral_net::endpoint::host_ifname(EndpointKind::Veth, &n.id, "c1");
    assert_eq!(host_links_named(&[&host]), Vec::<String>::new());
}

#[test]
fn remove_refuses_a_network_in_use_and_names_its_users() {
    let t = TestNet::new("rm", "10.123.7.0/24", false);
    let ns = Netns::new("r");
    let e = t
        .nets
        .connect(&t.name, "c1", ns.file.as_fd(), &opts("busy-box"))
        .unwrap();
    let err = t.nets.remove(&t.name, false).unwrap_err();
    assert!(err.to_string().contains("in use by busy-box"), "{err}");
    t.nets.remove(&t.name, true).unwrap();
    assert_eq!(
        host_links_named(&[&t.bridge, &e.host_ifname]),
        Vec::<String>::new()
    );
}

#[test]
fn disconnect_tolerates_a_namespace_that_is_gone() {
    let t = TestNet::new("gone", "10.123.8.0/24", false);
    let ns = Netns::new("g");
    let e = t
        .nets
        .connect(&t.name, "c1", ns.file.as_fd(), &opts("g"))
        .unwrap();
    drop(ns);
    // The kernel deletes the pair with the namespace, asynchronously.
    std::thread::sleep(Duration::from_millis(50));
    assert!(t.nets.disconnect(&t.name, "c1").unwrap().is_some());
    assert_eq!(host_links_named(&[&e.host_ifname]), Vec::<String>::new());
}

#[test]
fn tap_endpoint_is_on_the_bridge_and_removed_on_disconnect() {
    let t = TestNet::new("tap", "10.123.9.0/24", false);
    let e = t
        .nets
        .create_tap_endpoint(&t.name, "vm1", None, &opts("vm1"))
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(e.kind, EndpointKind::Tap);
    assert!(e.host_ifname.starts_with("crlt"));
    let out = std::process::Command::new("ip")
        .args(["-d", "link", "show", &e.host_ifname])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(&format!("master {}", t.bridge)), "{out}");
    assert!(
        out.contains("tun type tap") && out.contains("vnet_hdr"),
        "{out}"
    );
    t.nets.disconnect(&t.name, "vm1").unwrap();
    assert_eq!(host_links_named(&[&e.host_ifname]), Vec::<String>::new());
}

/// Re-executed by `concurrent_processes_get_distinct_addresses`: allocates one address in
/// the network named by the environment and prints it.
#[test]
fn ipam_child() {
    let Ok(dir) = std::env::var("CORRAL_NET_TEST_IPAM_DIR") else {
        return;
    };
    let owner = std::env::var("CORRAL_NET_TEST_IPAM_OWNER").unwrap();
    let s: corral_net::subnet::Subnet = "10.123.10.0/24".parse().unwrap();
    let ipam = corral_net::ipam::Ipam::open(std::path::Path::new(&dir), s, s.first_host());
    println!("IP={}", ipam.allocate(&owner).unwrap());
}

#[test]
fn concurrent_processes_get_distinct_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            std::process::Command::new(&exe)
                .args(["--exact", "ipam_child", "--nocapture", "--test-threads=1"])
                .env("CORRAL_NET_TEST_IPAM_DIR", dir.path())
                .env("CORRAL_NET_TEST_IPAM_OWNER", format!("p{i}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.split("IP=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
                .unwrap_or_else(|| panic!("{s}"))
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "{ips:?}");
}

#[test]
fn connect_and_disconnect_cost() {
    let t = TestNet::new("cost", "10.123.11.0/24", false);
    let ns = Netns::new("k");
    let n = 50;
    let start = Instant::now();
    for _ in 0..n {
        t.nets
            .connect(&t.name, "c1", ns.file.as_fd(), &opts("k"))
            .unwrap();
        t.nets.disconnect(&t.name, "c1").unwrap();
    }
    let per = start.elapsed() / n;
    println!("connect+disconnect: {per:?} per pair ({n} pairs)");
    let (mut c, mut d) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t0 = Instant::now();
        t.nets
            .connect(&t.name, "c1", ns.file.as_fd(), &opts("k"))
            .unwrap();
        let t1 = Instant::now();
        t.nets.disconnect(&t.name, "c1").unwrap();
        c += t1 - t0;
        d += t1.elapsed();
    }
    println!(
        "connect: {:?}, disconnect: {:?} (mean of {n})",
        c / n,
        d / n
    );
    // The figure is printed for reading; the bound only catches a regression by an order of
    // magnitude (a CI host under load has measured 54 ms where an idle one takes ~30 ms).
    assert!(per < Duration::from_millis(500), "{per:?}");
}
