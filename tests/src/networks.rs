//! Networks: test networks with subnets no other test holds, `network inspect` and the
//! container's `network_settings` parsed, a guard that removes a test's networks, the host-side
//! checks that a removed network left no link, nft rule or DNS server behind, and the small
//! clients tests use to talk to containers from the host (HTTP GET, a UDP exchange).
//!
//! Where corral puts things (docs/cli-networks.md): one bridge per network (`crl-br-` + 8 hex
//! of its id; `crl-br-default` for the default network), one veth per endpoint whose host end
//! is a `crl*` device enslaved to the bridge, rules in nft table `ip corral` whose chain names
//! carry the bridge's name, and one DNS server per network on UDP and TCP port 53 of its
//! gateway, a `corral __dns ...` process in the host's network namespace.
//!
//! Test subnets are /24s of [`TEST_POOL`] (10.124.0.0/16). Tests of one binary take distinct
//! ones from a process-wide counter; another process (a parallel run, another root) may hold
//! the same one, which corral refuses as an overlap with its host route, so
//! [`Corral::create_test_network`] moves on to the next.
//!
//! The UDP checks run the host's `python3` inside the container ([`host_python_binds`]):
//! Debian's busybox `nc` has no `-u`. The binds are read-only and need a merged-`/usr` host.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::containers::{poll_until, ContainerInfo};
use crate::process::{describe, run_bounded, wait_deadline};
use crate::Corral;

/// The range test networks take their /24s from.
pub const TEST_POOL: &str = "10.124.0.0/16";
/// The default network, as the contract fixes it.
pub const DEFAULT_NETWORK: &str = "corral";
/// The default network's subnet.
pub const DEFAULT_SUBNET: &str = "10.120.0.0/16";
/// The default network's gateway.
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 120, 0, 1);
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "crl-br-default";
/// Where the host's python3 is, for [`host_python_binds`].
pub const HOST_PYTHON: &str = "/usr/bin/python3";

/// How long a removal may take to show on the host (links, rules, the DNS process).
const SETTLE: Duration = Duration::from_secs(10);
/// How long the guard waits for one `network rm -f`.
const GUARD_TIMEOUT: Duration = Duration::from_secs(60);

/// A network a test created, with what its leak check needs after it is gone.
#[derive(Debug, Clone)]
pub struct TestNetwork {
    /// Its name.
    pub name: String,
    /// Its subnet, `a.b.c.d/len`.
    pub subnet: String,
    /// Its gateway.
    pub gateway: Ipv4Addr,
    /// Its bridge.
    pub bridge: String,
}

impl TestNetwork {
    /// Whether `ip` is a host address of the subnet other than the gateway.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let (base, len) = parse_cidr(&self.subnet);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let (ip_n, base_n) = (u32::from(ip), u32::from(base));
        ip_n & mask == base_n && ip_n != base_n && ip_n != base_n | !mask && ip != self.gateway
    }
}

/// `a.b.c.d/len` split; panics on anything else (subnets here come from corral or the test).
pub fn parse_cidr(cidr: &str) -> (Ipv4Addr, u32) {
    let (ip, len) = cidr
        .split_once('/')
        .unwrap_or_else(|| panic!("not CIDR: {cidr:?}"));
    (
        ip.parse()
            .unwrap_or_else(|e| panic!("not CIDR: {cidr:?}: {e}")),
        len.parse()
            .unwrap_or_else(|e| panic!("not CIDR: {cidr:?}: {e}")),
    )
}

/// An address as corral prints it, with or without `/prefix`.
fn parse_ip(s: &str) -> Option<Ipv4Addr> {
    s.split('/').next()?.parse().ok()
}

/// The next third octet of [`TEST_POOL`] for this process: starts at a point derived from the
/// pid, so that parallel runs start apart, and goes round.
fn next_octet() -> u8 {
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let n = next.get_or_insert_with(|| std::process::id().wrapping_mul(37) % 256);
    let octet = *n % 256;
    *n = n.wrapping_add(1);
    u8::try_from(octet).expect("octet below 256")
}

/// A subnet `10.124.X.0/prefix_len` of [`TEST_POOL`] that no other test of this process was
/// given (another process may hold it: corral then refuses it as overlapping).
pub fn next_test_subnet(prefix_len: u8) -> String {
    format!("10.124.{}.0/{prefix_len}", next_octet())
}

/// `network inspect NAME`, the fields tests check.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// The name.
    pub name: String,
    /// The id.
    pub id: String,
    /// The subnet, CIDR.
    pub subnet: String,
    /// The gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Whether it is internal.
    pub internal: bool,
    /// Its bridge.
    pub bridge: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointInfo>,
    /// The raw JSON object.
    pub raw: Value,
}

/// One endpoint of [`NetworkInfo`].
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// The container's name.
    pub container: String,
    /// The owner (the container's id).
    pub owner: String,
    /// Its address.
    pub ip: Option<Ipv4Addr>,
    /// Its MAC address.
    pub mac: String,
    /// Its aliases.
    pub aliases: Vec<String>,
    /// The raw JSON object.
    pub raw: Value,
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings_at(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl NetworkInfo {
    fn from_json(raw: Value) -> Self {
        let endpoints = raw
            .get("endpoints")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("network inspect has no `endpoints` array:\n{raw:#}"))
            .iter()
            .map(|e| EndpointInfo {
                container: str_at(e, "container"),
                owner: str_at(e, "owner"),
                ip: e.get("ip").and_then(Value::as_str).and_then(parse_ip),
                mac: str_at(e, "mac"),
                aliases: strings_at(e, "aliases"),
                raw: e.clone(),
            })
            .collect();
        NetworkInfo {
            name: str_at(&raw, "name"),
            id: str_at(&raw, "id"),
            subnet: str_at(&raw, "subnet"),
            gateway: raw
                .get("gateway")
                .and_then(Value::as_str)
                .and_then(parse_ip),
            internal: raw
                .get("internal")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            bridge: str_at(&raw, "bridge"),
            endpoints,
            raw,
        }
    }

    /// The endpoint of container `name`, if connected.
    pub fn endpoint_of(&self, name: &str) -> Option<&EndpointInfo> {
        self.endpoints.iter().find(|e| e.container == name)
    }
}

/// A container's attachment as `inspect` shows it in `network_settings.networks.NAME`.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Its address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: Option<u64>,
    /// The gateway.
    pub gateway: Option<Ipv4Addr>,
    /// The MAC address.
    pub mac: String,
    /// Its aliases.
    pub aliases: Vec<String>,
}

/// `network_settings.networks` of a container, by network name.
pub fn attachments(info: &ContainerInfo) -> Vec<(String, Attachment)> {
    let Some(networks) = info
        .raw
        .pointer("/network_settings/networks")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    networks
        .iter()
        .filter_map(|(name, v)| {
            let ip = v.get("ip").and_then(Value::as_str).and_then(parse_ip)?;
            Some((
                name.clone(),
                Attachment {
                    ip,
                    prefix: v.get("prefix").and_then(Value::as_u64),
                    gateway: v.get("gateway").and_then(Value::as_str).and_then(parse_ip),
                    mac: str_at(v, "mac"),
                    aliases: strings_at(v, "aliases"),
                },
            ))
        })
        .collect()
}

/// The address of a container on network `network`, from `inspect`.
///
/// # Panics
/// If `inspect` shows no such attachment.
pub fn ip_on(info: &ContainerInfo, network: &str) -> Ipv4Addr {
    attachments(info)
        .into_iter()
        .find(|(n, _)| n == network)
        .map(|(_, a)| a.ip)
        .unwrap_or_else(|| {
            panic!(
                "inspect {} shows no address on network {network}: {:#}",
                info.name,
                info.raw.get("network_settings").unwrap_or(&Value::Null)
            )
        })
}

impl Corral {
    /// `corral network create --subnet 10.124.X.0/LEN EXTRA... NAME`, taking the next /24
    /// of [`TEST_POOL`] (and the first `/LEN` inside it) that corral accepts, skipping those
    /// refused as overlapping (held by another run). Returns the network as inspected.
    ///
    /// # Panics
    /// If corral refuses the creation for another reason, or no candidate is accepted.
    pub fn create_test_network(&self, name: &str, prefix_len: u8, extra: &[&str]) -> TestNetwork {
        assert!((24..=30).contains(&prefix_len), "test subnets are /24../30");
        let mut last = String::new();
        for _ in 0..256 {
            let subnet = next_test_subnet(prefix_len);
            let mut args = vec!["network", "create", "--subnet", &subnet];
            args.extend_from_slice(extra);
            args.push(name);
            let out = self.cmd(&args);
            if out.status.success() {
                let printed = String::from_utf8_lossy(&out.stdout);
                assert_eq!(
                    printed.trim(),
                    name,
                    "network create prints the network's name"
                );
                let info = self.network_inspect(name);
                return TestNetwork {
                    name: name.to_owned(),
                    subnet: info.subnet,
                    gateway: info
                        .gateway
                        .unwrap_or_else(|| panic!("network inspect {name}: no gateway")),
                    bridge: info.bridge,
                };
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("overlap"),
                "corral {args:?} failed: {}",
                describe(&out)
            );
            last = stderr.into_owned();
        }
        panic!("no free test subnet in {TEST_POOL}; last refusal:\n{last}");
    }

    /// `corral network inspect NAME`, parsed.
    pub fn network_inspect(&self, name: &str) -> NetworkInfo {
        let text = self.ok(&["network", "inspect", name]);
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("corral network inspect {name} printed invalid JSON ({e}):\n{text}")
        });
        let value = match value {
            Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
            other => other,
        };
        NetworkInfo::from_json(value)
    }

    /// `corral network ls --json`, raw.
    pub fn network_ls(&self) -> Vec<Value> {
        let text = self.ok(&["network", "ls", "--json"]);
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("network ls --json printed invalid JSON ({e}):\n{text}"));
        value
            .as_array()
            .unwrap_or_else(|| panic!("network ls --json is not an array:\n{text}"))
            .clone()
    }
}

/// Removes, when dropped, every network it tracks (`network rm -f`, bounded, never panics).
///
/// Declare it before the [`crate::ContainerGuard`] of the same world, so that the containers
/// go first (locals drop in reverse order).
pub struct NetworkGuard<'a> {
    corral: &'a Corral,
    names: Vec<String>,
}

impl<'a> NetworkGuard<'a> {
    /// A guard over networks of `corral`'s world, tracking none yet.
    pub fn new(corral: &'a Corral) -> Self {
        NetworkGuard {
            corral,
            names: Vec::new(),
        }
    }

    /// Tracks a network by name: it is removed (forced) on drop.
    pub fn track(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }

    /// Creates a test network (see [`Corral::create_test_network`]) and tracks it.
    pub fn create(&mut self, name: &str, prefix_len: u8, extra: &[&str]) -> TestNetwork {
        self.track(name);
        self.corral.create_test_network(name, prefix_len, extra)
    }
}

impl Drop for NetworkGuard<'_> {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.names) {
            let child = self
                .corral
                .command(&["network", "rm", "-f", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                let _ = wait_deadline(&mut child, GUARD_TIMEOUT);
            }
        }
    }
}

/// Runs a host program with a deadline; its stdout when it exits 0, else `None`.
fn host_try(program: &str, args: &[&str]) -> Option<String> {
    let out = run_bounded(
        Command::new(program).args(args),
        None,
        Duration::from_secs(30),
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Host links named `bridge...` (the bridge itself included) or enslaved to `bridge`, from
/// `ip -o link`.
pub fn links_of_bridge(bridge: &str) -> Vec<String> {
    let text = host_try("ip", &["-o", "link", "show"]).unwrap_or_default();
    let master = format!(" master {bridge} ");
    text.lines()
        .filter_map(|line| {
            // `7: name@peer: <FLAGS> ... master BR state ...`
            let name = line.split(':').nth(1)?.trim();
            let name = name.split('@').next()?;
            (name.starts_with(bridge) || line.contains(&master)).then(|| name.to_owned())
        })
        .collect()
}

/// The links enslaved to `bridge` (its endpoints' host ends).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    links_of_bridge(bridge)
        .into_iter()
        .filter(|l| l != bridge)
        .collect()
}

/// `nft list table ip corral`, or empty when the table does not exist.
pub fn corral_nft_table() -> String {
    host_try("nft", &["list", "table", "ip", "corral"]).unwrap_or_default()
}

/// `/proc/net/{udp,tcp}`'s form of `ip:port` (the address in host byte order, hex).
fn proc_net_addr(ip: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()))
}

/// Whether some socket of the host's network namespace is bound to `ip:port` over `proto`
/// (`udp` or `tcp`; for TCP, listening).
pub fn bound_on(proto: &str, ip: Ipv4Addr, port: u16) -> bool {
    let wanted = proc_net_addr(ip, port);
    let table = fs::read_to_string(format!("/proc/net/{proto}")).unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1).unwrap_or_default();
        let state = cols.nth(1).unwrap_or_default();
        local.eq_ignore_ascii_case(&wanted) && (proto == "udp" || state == "0A")
    })
}

/// Host pids of DNS server processes (`__dns` in their command line) of network `needle`.
pub fn dns_processes(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let raw = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        // `corral __dns <root>/networks/<name> <gateway>`: the network's directory, not any
        // mention of the name (the binary's own path says "corral").
        if cmdline.contains("__dns") && cmdline.contains(&format!("/networks/{needle} ")) {
            found.push(pid);
        }
    }
    found
}

/// What a removed network left on the host: links of its bridge, nft mentions of its bridge
/// or subnet, a socket on its gateway's port 53, a DNS process naming it. Empty when clean.
pub fn network_leftovers(net: &TestNetwork) -> Vec<String> {
    let mut left = Vec::new();
    for link in links_of_bridge(&net.bridge) {
        left.push(format!("link {link}"));
    }
    let nft = corral_nft_table();
    for needle in [net.bridge.as_str(), net.subnet.as_str()] {
        if nft.contains(needle) {
            left.push(format!("nft table ip corral mentions {needle}"));
        }
    }
    for proto in ["udp", "tcp"] {
        if bound_on(proto, net.gateway, 53) {
            left.push(format!("a {proto} socket on {}:53", net.gateway));
        }
    }
    for pid in dns_processes(&net.name) {
        left.push(format!("DNS process {pid} naming {}", net.name));
    }
    left
}

/// Panics unless [`network_leftovers`] becomes empty within a few seconds.
pub fn assert_network_gone(net: &TestNetwork) {
    let mut left = Vec::new();
    let clean = poll_until(SETTLE, || {
        left = network_leftovers(net);
        left.is_empty()
    });
    assert!(
        clean,
        "network {} ({}, bridge {}) left behind after removal: {left:?}\nnft table ip corral:\n{}",
        net.name,
        net.subnet,
        net.bridge,
        corral_nft_table()
    );
}

/// The host's primary IPv4 address: the source of its route to a public address, else the
/// first non-loopback address.
pub fn host_primary_ipv4() -> Option<Ipv4Addr> {
    let route = host_try("ip", &["-4", "route", "get", "1.1.1.1"]).unwrap_or_default();
    let mut words = route.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            if let Some(ip) = words.next().and_then(|s| s.parse().ok()) {
                return Some(ip);
            }
        }
    }
    let addrs = host_try("ip", &["-4", "-o", "addr", "show", "scope", "global"])?;
    addrs.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        w.find(|x| *x == "inet")?;
        parse_ip(w.next()?)
    })
}

/// A TCP port free on every host address right now (bound to port 0, then released).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind(("0.0.0.0", 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free TCP port")
        .port()
}

/// A UDP port free on every host address right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.local_addr())
        .expect("bind a free UDP port")
        .port()
}

/// `GET path` over HTTP/1.0 to `addr`; the whole response (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Retries [`http_get`] until the response has status 200 or `deadline` passes; returns the
/// last response or error.
pub fn http_get_ok(addr: SocketAddr, path: &str, deadline: Duration) -> Result<String, String> {
    let end = Instant::now() + deadline;
    loop {
        let r = http_get(addr, path, Duration::from_secs(2));
        match &r {
            Ok(text) if text.starts_with("HTTP/1.") && text.contains(" 200 ") => return r,
            _ if Instant::now() >= end => return r,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends `payload` to `addr` over UDP every 200 ms until a datagram comes back or `deadline`
/// passes; the reply.
pub fn udp_exchange(addr: SocketAddr, payload: &[u8], deadline: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        sock.send_to(payload, addr).ok()?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// `-v` flags that let a busybox container run the host's [`HOST_PYTHON`]: `/usr`, and
/// `/lib` and `/lib64` from `/usr` (merged-`/usr` hosts), all read-only. `None` when the host
/// lacks them.
pub fn host_python_binds() -> Option<Vec<String>> {
    let parts = [
        ("/usr", "/usr"),
        ("/usr/lib", "/lib"),
        ("/usr/lib64", "/lib64"),
    ];
    if !Path::new(HOST_PYTHON).is_file() || parts.iter().any(|(h, _)| !Path::new(h).is_dir()) {
        return None;
    }
    Some(
        parts
            .iter()
            .flat_map(|(h, c)| ["-v".to_owned(), format!("{h}:{c}:ro")])
            .collect(),
    )
}

/// A python3 UDP echo server: `udp_echo.py PORT` answers every datagram with `echo:` + it.
pub const UDP_ECHO_PY: &str = r#"import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo:" + data, peer)
"#;

/// A python3 UDP client: `udp_send.py HOST PORT MSG` resolves HOST (the container's
/// `/etc/hosts` and `/etc/resolv.conf`), sends MSG every 200 ms for 2 s and prints the first
/// reply, or `timeout` (exit 1).
pub const UDP_SEND_PY: &str = r#"import socket, sys, time
addr = (socket.gethostbyname(sys.argv[1]), int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
end = time.time() + 2
while time.time() < end:
    s.sendto(sys.argv[3].encode(), addr)
    try:
        print(s.recv(2048).decode())
        sys.exit(0)
    except socket.timeout:
        pass
print("timeout")
sys.exit(1)
"#;

/// Writes [`UDP_ECHO_PY`] and [`UDP_SEND_PY`] into `dir` (created), for a `-v DIR:/py:ro`.
pub fn write_python_scripts(dir: &Path) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    for (name, text) in [("udp_echo.py", UDP_ECHO_PY), ("udp_send.py", UDP_SEND_PY)] {
        fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_are_host_order_hex() {
        assert_eq!(
            proc_net_addr(Ipv4Addr::new(10, 124, 5, 1), 53),
            "01057C0A:0035"
        );
    }

    #[test]
    fn subnet_membership_excludes_network_broadcast_and_gateway() {
        let n = TestNetwork {
            name: "n".into(),
            subnet: "10.124.7.0/30".into(),
            gateway: Ipv4Addr::new(10, 124, 7, 1),
            bridge: "crl-br-x".into(),
        };
        assert!(n.holds(Ipv4Addr::new(10, 124, 7, 2)));
        for bad in [0, 1, 3] {
            assert!(!n.holds(Ipv4Addr::new(10, 124, 7, bad)));
        }
        assert!(!n.holds(Ipv4Addr::new(10, 124, 8, 2)));
    }
}
