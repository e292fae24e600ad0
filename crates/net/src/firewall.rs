//! NAT, isolation and published ports, in nftables table `ip corral` only, through nft's
//! JSON interface (`nft -j -f -`, libnftables-json(5)); no other table is read or written.
//!
//! The table's base chains hold fixed rules that dispatch through sets and verdict maps, so
//! that a network or an endpoint is a few elements (and a chain or two) that one transaction
//! adds and one removes, without rule handles:
//!
//! ```text
//! set bridges   { ifname }                       every corral bridge
//! map fwd_in    { ifname : verdict }             bridge -> jump net-<bridge>-fwd
//! map masq      { ifname : verdict }             bridge -> jump net-<bridge>-masq (not internal)
//! map pub_any_addr, pub_any_port { proto . port : ip / port }   published on every address
//! map pub_ip_addr, pub_ip_port { hostip . proto . port : ip / port } on one host address
//! forward:      ct established,related accept; iifname vmap @fwd_in;
//!               oifname @bridges ct status dnat accept; oifname @bridges drop
//! net-B-fwd:    oifname B accept; [internal: drop]; oifname @bridges drop; accept
//! net-B-masq:   ip saddr SUBNET oifname != B masquerade
//! prerouting, output (nat): fib daddr type local dnat to @pub_ip_addr:@pub_ip_port,
//!               then to @pub_any_addr:@pub_any_port
//! postrouting:  ip saddr 127.0.0.0/8 oifname @bridges masquerade; iifname vmap @masq
//! ```
//!
//! Every transaction rewrites the base chains (flush and add, atomically) before its own
//! change, so it also repairs a missing or damaged table. Removals are idempotent without
//! `destroy` (nft 1.0.8+): each element is added, then deleted, in one transaction.
//! (Address and port are two maps because nft 1.0.6's JSON parser cannot declare a map
//! whose data is a concatenation.)
//! Publishing from the host itself to 127.0.0.1 works by `route_localnet=1` on the bridge
//! and the masquerade of 127.0.0.0/8 above.
//!
//! Limits: IPv4 only. A host whose own firewall drops forwarded packets (FORWARD policy drop
//! in another table, as docker's iptables rules set) also drops corral's traffic: that table
//! is not ours to change. Hairpin (a container reaching a published port of a container on
//! its own bridge through a host address) is not handled. Published ports hold no socket on
//! the host: a process that binds the port later is shadowed by the DNAT rule.
//! One nft run costs a few milliseconds (a process), so only network setup and publishing
//! ports run it, never a plain connect.

use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::fsutil::{FsError, Lock};
use crate::ports::{PortMapping, PortSpec, Protocol};
use crate::store::Network;

/// The nftables table corral owns.
pub const TABLE: &str = "corral";
const FAMILY: &str = "ip";

/// Errors of the firewall and of port publishing.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// nft could not be run.
    #[error("cannot run {nft} (install the nftables package)")]
    Spawn {
        /// The nft binary.
        nft: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// nft refused the change.
    #[error("nft: {op}: {stderr}")]
    Nft {
        /// What was being done.
        op: String,
        /// nft's message.
        stderr: String,
    },
    /// nft's output does not parse.
    #[error("nft: unexpected JSON output")]
    Output(#[source] serde_json::Error),
    /// Writing a sysctl failed.
    #[error("cannot set {path}")]
    Sysctl {
        /// The /proc/sys file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// Another corral endpoint publishes the host port.
    #[error("host port {mapping} is already published by {owner}: choose another host port")]
    PortPublished {
        /// The mapping asked for.
        mapping: PortMapping,
        /// Who publishes it.
        owner: String,
    },
    /// A process on the host listens on the port.
    #[error("host port {port}/{protocol} on {ip} is in use by a process on the host: stop it or choose another host port")]
    PortInUse {
        /// The address.
        ip: Ipv4Addr,
        /// The port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
    },
    /// The host address is not one of this host's.
    #[error("cannot publish on {0}: it is not an address of this host")]
    NotLocal(Ipv4Addr),
    /// No host port of a range is free.
    #[error("no free host port in {first}-{last}/{protocol}")]
    RangeFull {
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
        /// The protocol.
        protocol: Protocol,
    },
    /// Checking a port failed otherwise.
    #[error("cannot check host port {port}/{protocol}")]
    PortCheck {
        /// The port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The firewall lock could not be taken.
    #[error(transparent)]
    Lock(#[from] FsError),
}

type Result<T> = std::result::Result<T, FirewallError>;

/// corral's nftables table: network rules and published ports.
#[derive(Debug, Clone)]
pub struct Firewall {
    nft: PathBuf,
    lock: PathBuf,
    proc_sys: PathBuf,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall::new()
    }
}

fn cmd(verb: &str, obj: &str, body: Value) -> Value {
    json!({ verb: { obj: body } })
}

fn rule(chain: &str, expr: Value) -> Value {
    cmd(
        "add",
        "rule",
        json!({"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr}),
    )
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn fwd_chain(bridge: &str) -> String {
    format!("net-{bridge}-fwd")
}

fn masq_chain(bridge: &str) -> String {
    format!("net-{bridge}-masq")
}

fn element(verb: &str, set: &str, elem: Value) -> Value {
    cmd(
        verb,
        "element",
        json!({"family": FAMILY, "table": TABLE, "name": set, "elem": [elem]}),
    )
}

fn chain(verb: &str, name: &str) -> Value {
    cmd(
        verb,
        "chain",
        json!({"family": FAMILY, "table": TABLE, "name": name}),
    )
}

fn prefix(subnet: &crate::subnet::Subnet) -> Value {
    json!({"prefix": {"addr": subnet.addr().to_string(), "len": subnet.prefix()}})
}

/// The table, its sets and maps, and the base chains with their fixed rules.
fn base() -> Vec<Value> {
    let t = |body: Value| {
        let mut b = json!({"family": FAMILY, "table": TABLE});
        b.as_object_mut()
            .expect("object")
            .extend(body.as_object().expect("object").clone());
        b
    };
    let mut c = vec![cmd(
        "add",
        "table",
        json!({"family": FAMILY, "name": TABLE}),
    )];
    c.push(cmd(
        "add",
        "set",
        t(json!({"name": "bridges", "type": "ifname"})),
    ));
    c.push(cmd(
        "add",
        "map",
        t(json!({"name": "fwd_in", "type": "ifname", "map": "verdict"})),
    ));
    c.push(cmd(
        "add",
        "map",
        t(json!({"name": "masq", "type": "ifname", "map": "verdict"})),
    ));
    for (name, key) in [
        ("pub_any", json!(["inet_proto", "inet_service"])),
        ("pub_ip", json!(["ipv4_addr", "inet_proto", "inet_service"])),
    ] {
        for (suffix, data) in [("addr", "ipv4_addr"), ("port", "inet_service")] {
            c.push(cmd(
                "add",
                "map",
                t(json!({"name": format!("{name}_{suffix}"), "type": key, "map": data})),
            ));
        }
    }
    for (name, ty, hook, prio) in [
        ("forward", "filter", "forward", 0),
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
        ("postrouting", "nat", "postrouting", 100),
    ] {
        c.push(cmd(
            "add",
            "chain",
            t(json!({"name": name, "type": ty, "hook": hook, "prio": prio, "policy": "accept"})),
        ));
        c.push(cmd("flush", "chain", t(json!({"name": name}))));
    }
    c.push(rule(
        "forward",
        json!([matches("in", json!({"ct": {"key": "state"}}), json!(["established", "related"])), {"accept": null}]),
    ));
    c.push(rule(
        "forward",
        json!([{"vmap": {"key": meta("iifname"), "data": "@fwd_in"}}]),
    ));
    c.push(rule(
        "forward",
        json!([
            matches("==", meta("oifname"), json!("@bridges")),
            matches("in", json!({"ct": {"key": "status"}}), json!("dnat")),
            {"accept": null}
        ]),
    ));
    c.push(rule(
        "forward",
        json!([matches("==", meta("oifname"), json!("@bridges")), {"drop": null}]),
    ));
    let local = matches(
        "==",
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        json!("local"),
    );
    let l4 = json!([meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]);
    let mut with_ip = vec![json!({"payload": {"protocol": "ip", "field": "daddr"}})];
    with_ip.extend(l4.as_array().expect("array").iter().cloned());
    for ch in ["prerouting", "output"] {
        for (key, map) in [(json!(with_ip), "pub_ip"), (l4.clone(), "pub_any")] {
            let lookup = |suffix: &str| json!({"map": {"key": {"concat": key}, "data": format!("@{map}_{suffix}")}});
            c.push(rule(
                ch,
                json!([local, {"dnat": {"addr": lookup("addr"), "port": lookup("port")}}]),
            ));
        }
    }
    c.push(rule(
        "postrouting",
        json!([
            matches("==", json!({"payload": {"protocol": "ip", "field": "saddr"}}), json!({"prefix": {"addr": "127.0.0.0", "len": 8}})),
            matches("==", meta("oifname"), json!("@bridges")),
            {"masquerade": null}
        ]),
    ));
    c.push(rule(
        "postrouting",
        json!([{"vmap": {"key": meta("iifname"), "data": "@masq"}}]),
    ));
    c
}

/// The commands that add (`remove == false`) or remove a network's chains and elements.
fn network_cmds(n: &Network, remove: bool) -> Vec<Value> {
    let br = n.bridge.as_str();
    let (fwd, masq) = (fwd_chain(br), masq_chain(br));
    let mut c = vec![chain("add", &fwd), chain("flush", &fwd)];
    c.push(chain("add", &masq));
    c.push(chain("flush", &masq));
    let fwd_elem = json!([br, {"jump": {"target": fwd}}]);
    let masq_elem = json!([br, {"jump": {"target": masq}}]);
    if remove {
        // Add then delete: the transaction succeeds whether or not they existed.
        for (set, e) in [
            ("bridges", json!(br)),
            ("fwd_in", fwd_elem),
            ("masq", masq_elem),
        ] {
            c.push(element("add", set, e.clone()));
            c.push(element("delete", set, e));
        }
        c.push(chain("delete", &fwd));
        c.push(chain("delete", &masq));
        return c;
    }
    c.push(rule(
        &fwd,
        json!([matches("==", meta("oifname"), json!(br)), {"accept": null}]),
    ));
    if n.internal {
        c.push(rule(&fwd, json!([{"drop": null}])));
    } else {
        c.push(rule(
            &fwd,
            json!([matches("==", meta("oifname"), json!("@bridges")), {"drop": null}]),
        ));
        c.push(rule(&fwd, json!([{"accept": null}])));
        c.push(rule(
            &masq,
            json!([
                matches("==", json!({"payload": {"protocol": "ip", "field": "saddr"}}), prefix(&n.subnet)),
                matches("!=", meta("oifname"), json!(br)),
                {"masquerade": null}
            ]),
        ));
    }
    c.push(element("add", "bridges", json!(br)));
    c.push(element("add", "fwd_in", fwd_elem));
    if n.internal {
        c.push(element("add", "masq", masq_elem.clone()));
        c.push(element("delete", "masq", masq_elem));
    } else {
        c.push(element("add", "masq", masq_elem));
    }
    c
}

/// The two map elements (address, port) of a published port.
fn port_elems(ip: Ipv4Addr, m: &PortMapping) -> [(&'static str, Value); 2] {
    let proto = m.protocol.to_string();
    let (prefix, key) = match m.host_ip.filter(|h| !h.is_unspecified()) {
        Some(h) => (
            "pub_ip",
            json!({"concat": [h.to_string(), proto, m.host_port]}),
        ),
        None => ("pub_any", json!({"concat": [proto, m.host_port]})),
    };
    let (a, p) = if prefix == "pub_ip" {
        ("pub_ip_addr", "pub_ip_port")
    } else {
        ("pub_any_addr", "pub_any_port")
    };
    [
        (a, json!([key.clone(), ip.to_string()])),
        (p, json!([key, m.container_port])),
    ]
}

/// How [`Firewall::leftovers`] describes the objects of the `add` commands `cmds`.
fn describe_adds(cmds: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cmds {
        let Some(add) = c.get("add") else { continue };
        if let Some(ch) = add.get("chain") {
            out.push(format!("chain {}", ch["name"].as_str().unwrap_or("?")));
        }
        if let Some(e) = add.get("element") {
            for v in e["elem"].as_array().into_iter().flatten() {
                out.push(format!(
                    "element {} {}",
                    e["name"].as_str().unwrap_or("?"),
                    describe(v)
                ));
            }
        }
    }
    out
}

/// The objects a network owns in the table, as [`Firewall::leftovers`] lists them.
pub fn network_objects(n: &Network) -> Vec<String> {
    let mut v = describe_adds(&network_cmds(n, false));
    v.sort();
    v.dedup();
    // Elements added and deleted in the same transaction (internal networks' masq) are not
    // there.
    if n.internal {
        v.retain(|o| !o.starts_with("element masq "));
    }
    v
}

/// The objects an endpoint's published ports own in the table.
pub fn endpoint_objects(ip: Ipv4Addr, ports: &[PortMapping]) -> Vec<String> {
    let adds: Vec<Value> = ports
        .iter()
        .flat_map(|m| port_elems(ip, m))
        .map(|(set, e)| element("add", set, e))
        .collect();
    describe_adds(&adds)
}

/// The base chains, which are there whenever the table is.
pub const BASE_CHAINS: [&str; 4] = ["forward", "prerouting", "output", "postrouting"];

impl Firewall {
    /// The firewall driven by `nft` from `/usr/sbin/nft` (or `PATH`), locked by
    /// `/run/corral/firewall.lock` (the table is the host's, shared by every state root).
    pub fn new() -> Firewall {
        let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("nft"));
        Firewall {
            nft,
            lock: PathBuf::from("/run/corral/firewall.lock"),
            proc_sys: PathBuf::from("/proc/sys"),
        }
    }

    fn run(&self, op: &str, cmds: Vec<Value>) -> Result<()> {
        let body = serde_json::to_vec(&json!({"nftables": cmds})).expect("JSON");
        let out = self.nft(&["-j", "-f", "-"], Some(&body))?;
        if !out.status.success() {
            return Err(FirewallError::Nft {
                op: op.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn nft(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<std::process::Output> {
        let spawn_err = |err| FirewallError::Spawn {
            nft: self.nft.clone(),
            err,
        };
        let mut child = Command::new(&self.nft)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(data), Some(mut s)) = (stdin, child.stdin.take()) {
            s.write_all(data).map_err(spawn_err)?;
        }
        child.wait_with_output().map_err(spawn_err)
    }

    fn sysctl(&self, rel: &str, value: &str) -> Result<()> {
        let path = self.proc_sys.join(rel);
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            return Ok(());
        }
        std::fs::write(&path, value).map_err(|err| FirewallError::Sysctl { path, err })
    }

    /// Installs (or repairs) a network's rules: isolation, masquerade unless internal, and
    /// for non-internal networks `net.ipv4.ip_forward=1` and `route_localnet=1` on the bridge
    /// (which must exist).
    pub fn setup_network(&self, n: &Network) -> Result<()> {
        let _lock = Lock::exclusive(&self.lock)?;
        let mut c = base();
        c.extend(network_cmds(n, false));
        self.run(&format!("add rules of network {}", n.name), c)?;
        if !n.internal {
            self.sysctl("net/ipv4/ip_forward", "1")?;
            self.sysctl(&format!("net/ipv4/conf/{}/route_localnet", n.bridge), "1")?;
        }
        Ok(())
    }

    /// Removes a network's rules (idempotent); the table goes when no network is left in it.
    pub fn remove_network_rules(&self, n: &Network) -> Result<()> {
        let _lock = Lock::exclusive(&self.lock)?;
        let mut c = base();
        c.extend(network_cmds(n, true));
        self.run(&format!("remove rules of network {}", n.name), c)?;
        // The table is the host's: drop it only when no network of any state root uses it.
        let listed = self.list()?;
        let empty = listed.iter().all(|o| {
            o.strip_prefix("chain ")
                .is_some_and(|c| BASE_CHAINS.contains(&c))
        });
        if empty {
            self.run(
                "remove the empty table",
                vec![cmd(
                    "delete",
                    "table",
                    json!({"family": FAMILY, "name": TABLE}),
                )],
            )?;
        }
        Ok(())
    }

    /// Publishes `ports` to the endpoint address `ip` (DNAT from other machines and from the
    /// host itself). A host port that another endpoint holds in the kernel fails the whole
    /// transaction (nft: File exists).
    pub fn publish(&self, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let _lock = Lock::exclusive(&self.lock)?;
        let mut c = base();
        for (set, e) in ports.iter().flat_map(|m| port_elems(ip, m)) {
            c.push(element("add", set, e));
        }
        self.run(&format!("publish ports of {ip}"), c)
    }

    /// Removes the published ports of an endpoint (idempotent).
    pub fn remove_endpoint_rules(&self, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let _lock = Lock::exclusive(&self.lock)?;
        let mut c = base();
        for (set, e) in ports.iter().flat_map(|m| port_elems(ip, m)) {
            c.push(element("add", set, e.clone()));
            c.push(element("delete", set, e));
        }
        self.run(&format!("remove published ports of {ip}"), c)
    }

    /// What the table holds, one line per object: `chain NAME`, `element SET VALUE`
    /// (empty when there is no table). The leak check filters it by bridge name or address.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        self.list()
    }

    fn list(&self) -> Result<Vec<String>> {
        let out = self.nft(&["-j", "list", "table", FAMILY, TABLE], None)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file") {
                return Ok(Vec::new());
            }
            return Err(FirewallError::Nft {
                op: "list the table".into(),
                stderr: err.trim().to_string(),
            });
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(FirewallError::Output)?;
        let mut found = Vec::new();
        for o in v["nftables"].as_array().into_iter().flatten() {
            if let Some(ch) = o.get("chain") {
                found.push(format!("chain {}", ch["name"].as_str().unwrap_or("?")));
            }
            for kind in ["set", "map"] {
                if let Some(s) = o.get(kind) {
                    let name = s["name"].as_str().unwrap_or("?");
                    for e in s["elem"].as_array().into_iter().flatten() {
                        found.push(format!("element {name} {}", describe(e)));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// A compact text form of a JSON set element (`crl-br-x`, `tcp . 8080 : 10.121.0.2 . 80`).
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a.iter().map(describe).collect::<Vec<_>>().join(" : "),
        Value::Object(o) => {
            if let Some(c) = o.get("concat").and_then(Value::as_array) {
                c.iter().map(describe).collect::<Vec<_>>().join(" . ")
            } else if let Some(p) = o.get("prefix") {
                format!("{}/{}", describe(&p["addr"]), describe(&p["len"]))
            } else if let Some(j) = o.get("jump") {
                format!("jump {}", describe(&j["target"]))
            } else if let Some(e) = o.get("elem") {
                describe(&e["val"])
            } else {
                v.to_string()
            }
        }
        _ => v.to_string(),
    }
}

/// Checks that a process on the host does not hold the port: binds it (with SO_REUSEADDR
/// for TCP, as std does, so connections in TIME_WAIT do not count) and lets it go.
pub fn check_host_port(m: &PortMapping) -> Result<()> {
    let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let r = match m.protocol {
        Protocol::Tcp => TcpListener::bind((ip, m.host_port)).map(drop),
        Protocol::Udp => UdpSocket::bind((ip, m.host_port)).map(drop),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(FirewallError::PortInUse {
            ip,
            port: m.host_port,
            protocol: m.protocol,
        }),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Err(FirewallError::NotLocal(ip)),
        Err(err) => Err(FirewallError::PortCheck {
            port: m.host_port,
            protocol: m.protocol,
            err,
        }),
    }
}

/// A port the kernel picks as free for `protocol` on `ip`.
fn free_port(ip: Ipv4Addr, protocol: Protocol) -> Result<u16> {
    let r = match protocol {
        Protocol::Tcp => TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
    };
    match r {
        Ok(a) => Ok(a.port()),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Err(FirewallError::NotLocal(ip)),
        Err(err) => Err(FirewallError::PortCheck {
            port: 0,
            protocol,
            err,
        }),
    }
}

/// Turns `-p` specifications into mappings: picks the host ports left open, and refuses a
/// host port that `published` (every corral endpoint's mappings, with its owner) or a process
/// on the host already holds, or that an earlier spec of the same list takes.
pub fn resolve_ports(
    specs: &[PortSpec],
    published: &[(String, PortMapping)],
) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    let check = |m: &PortMapping, out: &[PortMapping]| -> Result<()> {
        if let Some((owner, _)) = published.iter().find(|(_, p)| p.conflicts_with(m)) {
            return Err(FirewallError::PortPublished {
                mapping: *m,
                owner: owner.clone(),
            });
        }
        if out.iter().any(|p| p.conflicts_with(m)) {
            return Err(FirewallError::PortPublished {
                mapping: *m,
                owner: "this endpoint (given twice)".into(),
            });
        }
        check_host_port(m)
    };
    for s in specs {
        let ip = s.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (c0, c1) = s.container_ports;
        match s.host_ports {
            None => {
                for cp in c0..=c1 {
                    // The kernel's pick can still be one another corral endpoint publishes
                    // (DNAT holds no socket): retry a few times.
                    let mut tries = 0;
                    let m = loop {
                        let m = PortMapping {
                            host_ip: s.host_ip,
                            host_port: free_port(ip, s.protocol)?,
                            container_port: cp,
                            protocol: s.protocol,
                        };
                        match check(&m, &out) {
                            Ok(()) => break m,
                            Err(e) if tries >= 16 => return Err(e),
                            Err(_) => tries += 1,
                        }
                    };
                    out.push(m);
                }
            }
            Some((h0, h1)) if c0 == c1 && h0 != h1 => {
                let m = (h0..=h1)
                    .map(|hp| PortMapping {
                        host_ip: s.host_ip,
                        host_port: hp,
                        container_port: c0,
                        protocol: s.protocol,
                    })
                    .find(|m| check(m, &out).is_ok())
                    .ok_or(FirewallError::RangeFull {
                        first: h0,
                        last: h1,
                        protocol: s.protocol,
                    })?;
                out.push(m);
            }
            Some((h0, _)) => {
                for (i, cp) in (c0..=c1).enumerate() {
                    let m = PortMapping {
                        host_ip: s.host_ip,
                        host_port: h0 + i as u16,
                        container_port: cp,
                        protocol: s.protocol,
                    };
                    check(&m, &out)?;
                    out.push(m);
                }
            }
        }
    }
    Ok(out)
}

/// The nft binary's path, for diagnostics.
impl Firewall {
    /// The nft binary used.
    pub fn nft_path(&self) -> &Path {
        &self.nft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn resolve_refuses_a_port_a_process_listens_on() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = resolve_ports(&[spec(&format!("{port}:80"))], &[]).unwrap_err();
        assert!(
            e.to_string().contains("in use by a process on the host"),
            "{e}"
        );
        // UDP on the same number is another port.
        resolve_ports(&[spec(&format!("{port}:80/udp"))], &[]).unwrap();
    }

    #[test]
    fn resolve_refuses_a_port_another_endpoint_publishes() {
        let taken = PortMapping {
            host_ip: None,
            host_port: 40123,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let e =
            resolve_ports(&[spec("127.0.0.1:40123:80")], &[("web1".into(), taken)]).unwrap_err();
        assert!(e.to_string().contains("already published by web1"), "{e}");
        let e = resolve_ports(&[spec("40124:80"), spec("40124:81")], &[]).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn resolve_picks_ports() {
        let m = resolve_ports(&[spec("80-81")], &[]).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].host_port > 0 && m[0].host_port != m[1].host_port);
        let m = resolve_ports(&[spec("40130-40132:80-82/udp")], &[]).unwrap();
        assert_eq!(
            m.iter()
                .map(|m| (m.host_port, m.container_port))
                .collect::<Vec<_>>(),
            [(40130, 80), (40131, 81), (40132, 82)]
        );
        let l = TcpListener::bind("0.0.0.0:40140").unwrap();
        let m = resolve_ports(&[spec("40140-40142:80")], &[]).unwrap();
        assert_eq!(m[0].host_port, 40141);
        drop(l);
        let e = resolve_ports(&[spec("192.0.2.77:40150:80")], &[]).unwrap_err();
        assert!(e.to_string().contains("not an address of this host"), "{e}");
    }

    #[test]
    fn describe_elements() {
        let e = json!([{"concat": ["tcp", 8080]}, {"concat": ["10.121.0.2", 80]}]);
        assert_eq!(describe(&e), "tcp . 8080 : 10.121.0.2 . 80");
        let e = json!([{"prefix": {"addr": "10.121.0.0", "len": 24}}, {"jump": {"target": "x"}}]);
        assert_eq!(describe(&e), "10.121.0.0/24 : jump x");
    }
}
