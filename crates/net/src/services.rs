//! The data path of Kubernetes Services on this node, as kube-proxy's nftables mode does it:
//! virtual IPs (ClusterIPs) and node ports load-balanced to ready endpoints by DNAT, in
//! nftables table `ip corral-svc` only (or the one given to [`ServiceProxy::with_table`], so
//! that two nodes on one host keep apart); no other table is read or written (`ip corral` is
//! [`crate::firewall`]'s).
//!
//! One fixed lookup per new connection, whatever the number of services, then one chain per
//! service and one per endpoint, so a service is a few chains and map elements that one
//! transaction adds, rewrites or removes without touching the others:
//!
//! ```text
//! map service-ips       { ipv4_addr . inet_proto . inet_service : verdict }  VIP . proto . port -> goto svc-T
//! map service-nodeports { inet_proto . inet_service : verdict }              proto . node port -> goto ext-T
//! prerouting, output (nat, dstnat): jump services
//! services:     ip daddr . meta l4proto . th dport vmap @service-ips
//!               fib daddr type local meta l4proto . th dport vmap @service-nodeports
//! ext-T:        mark 0x4000, goto svc-T                       (node ports are masqueraded)
//!               [Local: fib saddr type local mark 0x4000; goto svc-T]
//! svc-T:        [ip saddr @aff-T-E goto ep-T-E ...]           (sessionAffinity: ClientIP)
//!               numgen random mod N vmap { 0 : goto ep-T-E0, ... }
//!               no endpoints: reject with tcp reset / icmp port-unreachable
//! ep-T-E:       ip saddr B mark 0x4000                        (hairpin: B reaches itself)
//!               [update @aff-T-E { ip saddr }]; dnat to B:P
//! postrouting (nat, srcnat): mark 0x4000 unset -> return; clear it; masquerade
//! ```
//!
//! `T` is 16 hex digits of a SHA-256 of the service port's id, `E` an endpoint's address and
//! port in hex, so names stay short, valid and stable. nft's text syntax (`nft -f -`) is used:
//! nft 1.0.6's JSON parser cannot declare every map this needs.
//!
//! [`ServiceProxy::sync`] keeps what it last applied: the first call (and the first after an
//! error) recreates the table whole in one transaction (`add table; delete table; ...`); later
//! calls write only the services that changed, also in one transaction: element deletions
//! first, then the changed chains (a changed service's chains are flushed and rewritten, the
//! chains of endpoints it lost deleted), then element additions.
//!
//! Verified on Linux 6.18 with nft 1.0.6. `reject` sits in the nat chains themselves (no
//! filter chain, no `no-endpoints` set), which the kernel accepts for the output hook and,
//! since Linux 5.8 ("netfilter: introduce support for reject at prerouting stage", 2020), the
//! prerouting hook (`nft_reject_validate`); older kernels refuse the table (kube-proxy's
//! nftables mode needs 5.13 anyway).
//!
//! Limits:
//! - IPv4, TCP and UDP only.
//! - Node ports mark every connection for masquerade (Kubernetes' default
//!   `externalTrafficPolicy: Cluster`, so a backend elsewhere answers through this node);
//!   with [`ServiceRule::keep_client`] (`Local`) only connections from this host's own
//!   addresses are, and another host's client keeps its address.
//! - A node port reached from 127.0.0.1 is masqueraded after DNAT, which the kernel allows only
//!   out of an interface with `route_localnet=1`: corral's bridges have it (set by
//!   [`crate::firewall::Firewall::setup_network`] for non-internal networks); this module owns
//!   no interface and sets no sysctl, so endpoints behind other interfaces do not answer on
//!   127.0.0.1.
//! - UDP flows: after an update, the [`conntrack`](crate::conntrack) entries that the change
//!   leaves wrong are deleted, as kube-proxy deletes them: flows that a DNAT sent to an endpoint
//!   the service lost (they would keep going there until idle for the UDP timeout), and flows
//!   to a service address that no DNAT caught (sent before the service had endpoints), once it
//!   has some. A full rebuild (the first sync, one after an error) deletes none: it does not
//!   know what the table said before. TCP flows keep their endpoint until they end, as with
//!   kube-proxy.
//! - Affinity sets are emptied when the table is rebuilt and when a service's timeout changes.
//! - The in-memory record of what was applied is trusted: a table changed behind corral's back
//!   is repaired when a later change fails and forces a rebuild, or after
//!   [`ServiceProxy::force_rebuild`].
//! - The mark bit 0x4000 is kube-proxy's: do not run both on one node.
//! - One nft run is a process, and nft reads the table's chains before changing it: building
//!   1,000 services × 10 endpoints takes ~1.1-1.3 s, changing one of them then ~60-90 ms
//!   (the kernel test `incremental_sync_with_1000_services_of_10_endpoints` prints them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::conntrack::{self, Conntrack, Flow};
use crate::firewall::{Firewall, FirewallError};
use crate::fsutil::Lock;
use crate::ports::Protocol;

/// The nftables table (family `ip`) that the service rules live in.
pub const SVC_TABLE: &str = "corral-svc";

/// The packet mark bit asking postrouting to masquerade (kube-proxy's).
const MASQ_MARK: u32 = 0x4000;

type Result<T> = std::result::Result<T, FirewallError>;

/// One ready endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The endpoint's port.
    pub port: u16,
}

/// What one service port asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    /// A stable id of the service port, e.g. `default/web/http`; chains are named after a
    /// hash of it.
    pub id: String,
    /// The ClusterIP; `None` for a port that only answers on host addresses (a load
    /// balancer across the replicas that publish one host port).
    pub vip: Option<Ipv4Addr>,
    /// The service port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Also answer on this port of every local address (`fib daddr type local`), 127.0.0.1
    /// included.
    pub node_port: Option<u16>,
    /// Answer on the node port of this host address only (a port published as
    /// `127.0.0.1:8080:80`); `None` or `0.0.0.0`: every local address.
    pub node_ip: Option<Ipv4Addr>,
    /// The ready endpoints; none rejects connections (TCP reset, ICMP port unreachable), as
    /// kube-proxy does.
    pub backends: Vec<Backend>,
    /// `sessionAffinity: ClientIP`: a client address keeps going to the endpoint it reached
    /// last, until it has made no new connection for this many seconds. Implemented with one
    /// dynamic set per endpoint (addresses with a timeout, refreshed by each connection).
    pub affinity_seconds: Option<u32>,
    /// `externalTrafficPolicy: Local`: a node-port connection from another host keeps its
    /// client's address (not masqueraded; the backends must be this node's). Connections from
    /// this host's own addresses, 127.0.0.1 included, are masqueraded still, as kube-proxy
    /// does.
    pub keep_client: bool,
}

/// A service port as programmed: conflicts dropped, endpoints sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Svc {
    token: String,
    vip: Option<Ipv4Addr>,
    port: u16,
    protocol: Protocol,
    node_port: Option<u16>,
    node_ip: Option<Ipv4Addr>,
    backends: Vec<Backend>,
    affinity: Option<u32>,
    keep_client: bool,
}

/// 16 hex digits of the id's SHA-256: short, valid in a chain name, the same on every run.
fn token(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..8])
}

fn endpoint_suffix(b: &Backend) -> String {
    format!("{:08x}-{:04x}", u32::from(b.ip), b.port)
}

impl Svc {
    fn svc_chain(&self) -> String {
        format!("svc-{}", self.token)
    }

    fn ext_chain(&self) -> String {
        format!("ext-{}", self.token)
    }

    fn ep_chain(&self, b: &Backend) -> String {
        format!("ep-{}-{}", self.token, endpoint_suffix(b))
    }

    fn aff_set(&self, b: &Backend) -> String {
        format!("aff-{}-{}", self.token, endpoint_suffix(b))
    }

    /// The map elements that lead to this service: (map, key, verdict).
    fn elements(&self) -> Vec<(&'static str, String, String)> {
        let mut v = Vec::new();
        if let Some(vip) = self.vip {
            v.push((
                "service-ips",
                format!("{vip} . {} . {}", self.protocol, self.port),
                format!("goto {}", self.svc_chain()),
            ));
        }
        match (self.node_port, self.node_ip) {
            // A node port on one address is that address's entry in the address map: the
            // lookup is the same, and the address is local.
            (Some(np), Some(ip)) => v.push((
                "service-ips",
                format!("{ip} . {} . {np}", self.protocol),
                format!("goto {}", self.ext_chain()),
            )),
            (Some(np), None) => v.push((
                "service-nodeports",
                format!("{} . {np}", self.protocol),
                format!("goto {}", self.ext_chain()),
            )),
            (None, _) => {}
        }
        v
    }

    fn has(&self, b: &Backend) -> bool {
        self.backends.contains(b)
    }
}

/// The rules as they will be programmed, by id. Input order decides conflicts: a rule whose id,
/// id hash or VIP and port an earlier rule already has is left out, and so is a node port an
/// earlier rule already has (the rest of that rule stays); each is logged.
fn normalize(rules: &[ServiceRule]) -> BTreeMap<String, Svc> {
    let mut out: BTreeMap<String, Svc> = BTreeMap::new();
    let mut tokens: HashMap<String, &str> = HashMap::new();
    let mut vips: HashMap<(Ipv4Addr, Protocol, u16), &str> = HashMap::new();
    let mut node_ports: HashMap<(Protocol, u16), &str> = HashMap::new();
    for r in rules {
        let token = token(&r.id);
        if out.contains_key(&r.id) {
            tracing::warn!(id = %r.id, "service port given twice: the first is kept");
            continue;
        }
        if let Some(other) = tokens.get(&token) {
            tracing::warn!(id = %r.id, other, "service port ids hash alike: left out");
            continue;
        }
        if let Some(vip) = r.vip {
            if let Some(other) = vips.get(&(vip, r.protocol, r.port)) {
                tracing::warn!(id = %r.id, other, %vip, port = r.port, "virtual IP and port taken: left out");
                continue;
            }
        }
        let node_ip = r.node_ip.filter(|ip| !ip.is_unspecified());
        let node_port = r.node_port.filter(|&np| np != 0).filter(|&np| {
            let taken = match node_ip {
                Some(ip) => vips.get(&(ip, r.protocol, np)),
                None => node_ports.get(&(r.protocol, np)),
            };
            match taken {
                Some(other) => {
                    tracing::warn!(id = %r.id, other, node_port = np, "node port taken: left out");
                    false
                }
                None => true,
            }
        });
        if let Some(np) = node_port {
            match node_ip {
                Some(ip) => vips.insert((ip, r.protocol, np), &r.id),
                None => node_ports.insert((r.protocol, np), &r.id),
            };
        }
        if let Some(vip) = r.vip {
            vips.insert((vip, r.protocol, r.port), &r.id);
        }
        tokens.insert(token.clone(), &r.id);
        let mut backends = r.backends.clone();
        backends.sort_by_key(|b| (b.ip, b.port));
        backends.dedup();
        out.insert(
            r.id.clone(),
            Svc {
                token,
                vip: r.vip,
                port: r.port,
                protocol: r.protocol,
                node_port,
                node_ip: node_port.and(node_ip),
                backends,
                affinity: r.affinity_seconds.filter(|&s| s > 0),
                keep_client: r.keep_client && node_port.is_some(),
            },
        );
    }
    out
}

/// An nft script in three parts run in this order, so that nothing is deleted while an element
/// still leads to it and no element leads to a chain not yet there.
#[derive(Debug)]
struct Script {
    /// `ip TABLE`, as every command names it.
    t: String,
    /// Element deletions.
    pre: String,
    /// Tables, sets and chains.
    body: String,
    /// Element additions.
    post: String,
}

/// Appends one command to a script part.
macro_rules! cmd {
    ($buf:expr, $($arg:tt)*) => {{
        // Writing to a String cannot fail.
        let _ = writeln!($buf, $($arg)*);
    }};
}

impl Script {
    fn new(table: &str) -> Script {
        Script {
            t: format!("ip {table}"),
            pre: String::new(),
            body: String::new(),
            post: String::new(),
        }
    }

    fn finish(self) -> String {
        self.pre + &self.body + &self.post
    }

    fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.body.is_empty() && self.post.is_empty()
    }

    /// Recreates the table with its maps and base chains, empty of services.
    fn base(&mut self) {
        let (b, t) = (&mut self.body, &self.t);
        cmd!(b, "add table {t}");
        cmd!(b, "delete table {t}");
        cmd!(b, "add table {t}");
        cmd!(
            b,
            "add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}"
        );
        cmd!(
            b,
            "add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; }}"
        );
        cmd!(b, "add chain {t} services");
        // dstnat is -100, srcnat 100; nft 1.0.6 knows `dstnat` for prerouting only.
        for (chain, hook, prio) in [
            ("prerouting", "prerouting", -100),
            ("output", "output", -100),
            ("postrouting", "postrouting", 100),
        ] {
            cmd!(
                b,
                "add chain {t} {chain} {{ type nat hook {hook} priority {prio} ; policy accept ; }}"
            );
        }
        cmd!(b, "add rule {t} prerouting jump services");
        cmd!(b, "add rule {t} output jump services");
        cmd!(
            b,
            "add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips"
        );
        cmd!(
            b,
            "add rule {t} services fib daddr type local meta l4proto . th dport vmap @service-nodeports"
        );
        cmd!(
            b,
            "add rule {t} postrouting meta mark & {MASQ_MARK:#x} == 0 return"
        );
        cmd!(
            b,
            "add rule {t} postrouting meta mark set meta mark ^ {MASQ_MARK:#x}"
        );
        cmd!(b, "add rule {t} postrouting masquerade fully-random");
    }

    fn add_element(&mut self, (map, key, verdict): &(&str, String, String)) {
        let t = &self.t;
        cmd!(self.post, "add element {t} {map} {{ {key} : {verdict} }}");
    }

    fn delete_element(&mut self, (map, key, _): &(&str, String, String)) {
        let t = &self.t;
        cmd!(self.pre, "delete element {t} {map} {{ {key} }}");
    }

    /// Writes the chains and sets of `v`. `old` is what the table holds for the same id (its
    /// elements are the caller's): its chains are flushed and rewritten, those of endpoints
    /// that went deleted, affinity sets kept where endpoint and timeout stay.
    fn write_service(&mut self, v: &Svc, old: Option<&Svc>) {
        let (b, t) = (&mut self.body, &self.t);
        let (svc, ext) = (v.svc_chain(), v.ext_chain());
        // An endpoint's affinity set stays when endpoint and timeout do.
        let set_kept =
            |e: &Backend| v.has(e) && old.is_some_and(|o| o.affinity == v.affinity && o.has(e));
        match old {
            Some(o) => {
                // Nothing may refer to a chain or set when it goes: flush the referrers first.
                cmd!(b, "flush chain {t} {svc}");
                for e in &o.backends {
                    cmd!(b, "flush chain {t} {}", o.ep_chain(e));
                }
                for e in o.backends.iter().filter(|e| !v.has(e)) {
                    cmd!(b, "delete chain {t} {}", o.ep_chain(e));
                }
                if o.affinity.is_some() {
                    for e in o.backends.iter().filter(|e| !set_kept(e)) {
                        cmd!(b, "delete set {t} {}", o.aff_set(e));
                    }
                }
                if o.node_port.is_some() && v.node_port.is_none() {
                    cmd!(b, "flush chain {t} {ext}");
                    cmd!(b, "delete chain {t} {ext}");
                }
            }
            None => cmd!(b, "add chain {t} {svc}"),
        }
        for e in &v.backends {
            let (ep, aff) = (v.ep_chain(e), v.aff_set(e));
            if !old.is_some_and(|o| o.has(e)) {
                cmd!(b, "add chain {t} {ep}");
            }
            if let Some(secs) = v.affinity {
                if !set_kept(e) {
                    cmd!(
                        b,
                        "add set {t} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {secs}s ; }}"
                    );
                }
            }
            // A pod reaching a service that lands on itself: without masquerade its reply
            // would go to its own address, never back through the node.
            cmd!(
                b,
                "add rule {t} {ep} ip saddr {} meta mark set meta mark | {MASQ_MARK:#x}",
                e.ip
            );
            if v.affinity.is_some() {
                cmd!(b, "add rule {t} {ep} update @{aff} {{ ip saddr }}");
            }
            cmd!(
                b,
                "add rule {t} {ep} meta l4proto {} dnat to {}:{}",
                v.protocol,
                e.ip,
                e.port
            );
        }
        if v.affinity.is_some() {
            for e in &v.backends {
                cmd!(
                    b,
                    "add rule {t} {svc} ip saddr @{} goto {}",
                    v.aff_set(e),
                    v.ep_chain(e)
                );
            }
        }
        match v.backends.as_slice() {
            [] => match v.protocol {
                Protocol::Tcp => cmd!(
                    b,
                    "add rule {t} {svc} meta l4proto tcp reject with tcp reset"
                ),
                Protocol::Udp => cmd!(
                    b,
                    "add rule {t} {svc} reject with icmp type port-unreachable"
                ),
            },
            [e] => cmd!(b, "add rule {t} {svc} goto {}", v.ep_chain(e)),
            all => {
                let arms: Vec<String> = all
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{i} : goto {}", v.ep_chain(e)))
                    .collect();
                cmd!(
                    b,
                    "add rule {t} {svc} numgen random mod {} vmap {{ {} }}",
                    all.len(),
                    arms.join(", ")
                );
            }
        }
        if v.node_port.is_some() {
            if old.is_some_and(|o| o.node_port.is_some()) {
                cmd!(b, "flush chain {t} {ext}");
            } else {
                cmd!(b, "add chain {t} {ext}");
            }
            if v.keep_client {
                // Only this host's own connections need the masquerade to come back.
                cmd!(
                    b,
                    "add rule {t} {ext} fib saddr type local meta mark set meta mark | {MASQ_MARK:#x}"
                );
                cmd!(b, "add rule {t} {ext} goto {svc}");
            } else {
                cmd!(
                    b,
                    "add rule {t} {ext} meta mark set meta mark | {MASQ_MARK:#x} goto {svc}"
                );
            }
        }
    }

    /// Deletes the chains and sets of `o` (its elements are the caller's).
    fn delete_service(&mut self, o: &Svc) {
        let (b, t) = (&mut self.body, &self.t);
        let mut chains = vec![o.svc_chain()];
        chains.extend(o.backends.iter().map(|e| o.ep_chain(e)));
        if o.node_port.is_some() {
            chains.push(o.ext_chain());
        }
        for c in &chains {
            cmd!(b, "flush chain {t} {c}");
        }
        for c in &chains {
            cmd!(b, "delete chain {t} {c}");
        }
        if o.affinity.is_some() {
            for e in &o.backends {
                cmd!(b, "delete set {t} {}", o.aff_set(e));
            }
        }
    }
}

/// The script that recreates `table` holding exactly `want`.
fn full_script(table: &str, want: &BTreeMap<String, Svc>) -> String {
    let mut s = Script::new(table);
    s.base();
    for v in want.values() {
        s.write_service(v, None);
        for e in v.elements() {
            s.add_element(&e);
        }
    }
    s.finish()
}

/// The script that turns `table` holding `old` into one holding `want`, and how many service
/// ports it changes (added, removed or rewritten); empty when none.
fn diff_script(
    table: &str,
    old: &BTreeMap<String, Svc>,
    want: &BTreeMap<String, Svc>,
) -> (String, usize) {
    let mut s = Script::new(table);
    let mut changed = 0;
    let ids: BTreeSet<&String> = old.keys().chain(want.keys()).collect();
    for id in ids {
        match (old.get(id), want.get(id)) {
            (Some(o), Some(v)) if o == v => {}
            (Some(o), Some(v)) => {
                changed += 1;
                let (oe, ve) = (o.elements(), v.elements());
                for e in oe.iter().filter(|e| !ve.contains(e)) {
                    s.delete_element(e);
                }
                s.write_service(v, Some(o));
                for e in ve.iter().filter(|e| !oe.contains(e)) {
                    s.add_element(e);
                }
            }
            (Some(o), None) => {
                changed += 1;
                for e in o.elements() {
                    s.delete_element(&e);
                }
                s.delete_service(o);
            }
            (None, Some(v)) => {
                changed += 1;
                s.write_service(v, None);
                for e in v.elements() {
                    s.add_element(&e);
                }
            }
            (None, None) => {}
        }
    }
    debug_assert_eq!(s.is_empty(), changed == 0);
    (s.finish(), changed)
}

/// Where a service port is reached: its VIP and port, or its node port (on one host address,
/// or on any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Vip(Ipv4Addr, u16),
    NodePort(Option<Ipv4Addr>, u16),
}

impl Front {
    fn of(v: &Svc) -> Vec<Front> {
        let mut f = Vec::new();
        if let Some(vip) = v.vip {
            f.push(Front::Vip(vip, v.port));
        }
        if let Some(np) = v.node_port {
            f.push(Front::NodePort(
                v.node_ip.filter(|ip| !ip.is_unspecified()),
                np,
            ));
        }
        f
    }

    fn reaches(&self, f: &Flow) -> bool {
        match *self {
            Front::Vip(ip, port) => f.dst == ip && f.dport == port,
            Front::NodePort(ip, port) => f.dport == port && ip.is_none_or(|ip| f.dst == ip),
        }
    }
}

/// The UDP flows that a change of the rules leaves wrong (kube-proxy's list): flows a DNAT sent
/// to an endpoint that its service no longer has there, and flows to a service address that
/// went untranslated because the service had no endpoints (or no rule) then and has some now.
#[derive(Debug, Default, PartialEq)]
struct StaleFlows {
    lost: Vec<(Front, Backend)>,
    untranslated: Vec<Front>,
}

impl StaleFlows {
    fn between(old: &BTreeMap<String, Svc>, new: &BTreeMap<String, Svc>) -> StaleFlows {
        fn udp<'a>(m: &'a BTreeMap<String, Svc>, id: &str) -> Option<(Vec<Front>, &'a Svc)> {
            let v = m.get(id).filter(|v| v.protocol == Protocol::Udp)?;
            Some((Front::of(v), v))
        }
        let mut stale = StaleFlows::default();
        for id in old.keys() {
            let Some((fronts, o)) = udp(old, id) else {
                continue;
            };
            let kept = udp(new, id);
            for front in fronts {
                for b in &o.backends {
                    let still = kept
                        .as_ref()
                        .is_some_and(|(f, n)| f.contains(&front) && n.has(b));
                    if !still {
                        stale.lost.push((front, b.clone()));
                    }
                }
            }
        }
        for id in new.keys() {
            let Some((fronts, n)) = udp(new, id) else {
                continue;
            };
            if n.backends.is_empty() {
                continue;
            }
            let before = udp(old, id);
            for front in fronts {
                let served = before
                    .as_ref()
                    .is_some_and(|(f, o)| f.contains(&front) && !o.backends.is_empty());
                if !served {
                    stale.untranslated.push(front);
                }
            }
        }
        stale
    }

    fn is_empty(&self) -> bool {
        self.lost.is_empty() && self.untranslated.is_empty()
    }

    fn covers(&self, f: &Flow) -> bool {
        self.lost.iter().any(|(front, b)| {
            front.reaches(f) && f.translated() && (f.reply_src, f.reply_sport) == (b.ip, b.port)
        }) || self
            .untranslated
            .iter()
            .any(|front| front.reaches(f) && !f.translated())
    }

    /// Deletes them from the calling thread's network namespace; how many were deleted.
    fn delete(&self) -> io::Result<usize> {
        let mut ct = Conntrack::open()?;
        let mut n = 0;
        for f in ct.flows(conntrack::UDP)? {
            if self.covers(&f) && ct.delete(&f)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Kubernetes Services on this node: table `ip corral-svc` (or the one given to
/// [`with_table`](Self::with_table)) of the network namespace of the calling thread (nft runs as
/// a child of it).
#[derive(Debug)]
pub struct ServiceProxy {
    nft: PathBuf,
    lock: PathBuf,
    table: String,
    /// What the table holds, by id; `None` until a full rebuild succeeds (and after an error).
    applied: Option<BTreeMap<String, Svc>>,
}

impl Default for ServiceProxy {
    fn default() -> Self {
        ServiceProxy::new()
    }
}

impl ServiceProxy {
    /// The proxy of table [`SVC_TABLE`], driven by the same `nft` as [`Firewall`], locked by
    /// `/run/corral/services.lock`; its first [`sync`](Self::sync) rebuilds the table.
    pub fn new() -> Self {
        ServiceProxy::with_table(SVC_TABLE)
    }

    /// The proxy of table `ip TABLE` (an nft identifier, e.g. `corral-svc-<node hash>`, so
    /// that two nodes on one host keep their rules apart); otherwise as [`new`](Self::new).
    pub fn with_table(table: &str) -> Self {
        ServiceProxy {
            nft: Firewall::new().nft_path().to_path_buf(),
            lock: PathBuf::from("/run/corral/services.lock"),
            table: table.to_string(),
            applied: None,
        }
    }

    /// The table's name (family `ip`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Makes the table say exactly `rules`: the first call (or the first after an error)
    /// rebuilds the table whole in one transaction; later calls change only the services whose
    /// rule changed (add/replace/delete their chains and map elements), in one nft transaction,
    /// and run nothing when none did. Returns how many services changed (on a rebuild, all of
    /// them). Conflicting rules are left out, the earlier in `rules` kept (see the log).
    pub fn sync(&mut self, rules: &[ServiceRule]) -> Result<usize> {
        let want = normalize(rules);
        let (script, changed, op, stale) = match self.applied.take() {
            Some(old) => {
                let (script, changed) = diff_script(&self.table, &old, &want);
                if changed == 0 {
                    self.applied = Some(old);
                    return Ok(0);
                }
                (script, changed, "update", StaleFlows::between(&old, &want))
            }
            None => (
                full_script(&self.table, &want),
                want.len(),
                "rebuild",
                StaleFlows::default(),
            ),
        };
        // `applied` stays `None` if this fails: the table is then in an unknown state and the
        // next call rebuilds it.
        let _lock = Lock::exclusive(&self.lock)?;
        self.run(&format!("{op} table ip {}", self.table), &script)?;
        tracing::debug!(changed, op, table = %self.table, "service rules applied");
        self.applied = Some(want);
        if !stale.is_empty() {
            // The rules are right whatever happens here; a flow left behind ends by itself.
            match stale.delete() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(n, table = %self.table, "stale UDP flows deleted"),
                Err(e) => tracing::warn!(error = %e, "could not delete stale UDP flows"),
            }
        }
        Ok(changed)
    }

    /// Makes the next [`sync`](Self::sync) rebuild the table whole (repairing whatever else
    /// changed it).
    pub fn force_rebuild(&mut self) {
        self.applied = None;
    }

    /// Deletes the table (nothing left behind); idempotent.
    pub fn remove(&mut self) -> Result<()> {
        self.applied = None;
        let _lock = Lock::exclusive(&self.lock)?;
        let t = format!("ip {}", self.table);
        self.run(
            &format!("remove table {t}"),
            &format!("add table {t}\ndelete table {t}\n"),
        )
    }

    /// Runs `nft -f -` with `script` on its stdin: one transaction.
    fn run(&self, op: &str, script: &str) -> Result<()> {
        let spawn_err = |err| FirewallError::Spawn {
            nft: self.nft.clone(),
            err,
        };
        let mut child = Command::new(&self.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let mut stdin = child.stdin.take();
        // Write from another thread: a big script must not block on a full stderr pipe.
        let (written, out) = std::thread::scope(|s| {
            let w = s.spawn(move || match stdin.as_mut() {
                Some(i) => i.write_all(script.as_bytes()),
                None => Ok(()),
            });
            let out = child.wait_with_output();
            (w.join().expect("stdin writer"), out)
        });
        let out = out.map_err(spawn_err)?;
        if !out.status.success() {
            return Err(FirewallError::Nft {
                op: op.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        match written {
            // nft read it all, or it could not have succeeded.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(spawn_err(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(ip: &str, port: u16) -> Backend {
        Backend {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn rule(id: &str, vip: &str, backends: Vec<Backend>) -> ServiceRule {
        ServiceRule {
            id: id.into(),
            vip: Some(vip.parse().unwrap()),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            node_ip: None,
            backends,
            affinity_seconds: None,
            keep_client: false,
        }
    }

    fn lines_with<'a>(script: &'a str, needle: &str) -> Vec<&'a str> {
        script.lines().filter(|l| l.contains(needle)).collect()
    }

    #[test]
    fn another_table_is_named_in_every_command() {
        let want = normalize(&[rule("a", "10.96.0.1", vec![be("10.244.0.2", 80)])]);
        let s = full_script("corral-svc-0badcafe", &want);
        assert!(
            s.lines()
                .all(|l| l.split(' ').nth(3) == Some("corral-svc-0badcafe")),
            "{s}"
        );
        let (s, _) = diff_script("corral-svc-0badcafe", &want, &BTreeMap::new());
        assert!(
            s.lines()
                .all(|l| l.split(' ').nth(3) == Some("corral-svc-0badcafe")),
            "{s}"
        );
        assert_eq!(ServiceProxy::new().table(), SVC_TABLE);
    }

    #[test]
    fn chain_names_are_short_valid_and_stable() {
        let v = &normalize(&[rule(
            "a-very-long-namespace-name/an-even-longer-service-name/https",
            "10.96.0.1",
            vec![be("10.244.255.254", 65535)],
        )])["a-very-long-namespace-name/an-even-longer-service-name/https"];
        let e = &v.backends[0];
        for name in [v.svc_chain(), v.ext_chain(), v.ep_chain(e), v.aff_set(e)] {
            assert!(name.len() < 64, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
        assert_eq!(v.ep_chain(e), format!("ep-{}-0af4fffe-ffff", v.token));
        assert_eq!(token("x"), token("x"));
        assert_ne!(token("x"), token("y"));
    }

    #[test]
    fn full_build_has_base_chains_services_and_elements() {
        let mut web = rule(
            "default/web/http",
            "10.96.0.10",
            vec![be("10.244.0.2", 8080), be("10.244.0.3", 8080)],
        );
        web.node_port = Some(30080);
        let mut dns = rule(
            "kube-system/dns/dns",
            "10.96.0.53",
            vec![be("10.244.0.4", 53)],
        );
        dns.protocol = Protocol::Udp;
        dns.port = 53;
        let empty = rule("default/none/http", "10.96.0.11", vec![]);
        let mut empty_udp = rule("default/none/udp", "10.96.0.11", vec![]);
        empty_udp.protocol = Protocol::Udp;
        let want = normalize(&[web, dns, empty, empty_udp]);
        let s = full_script(SVC_TABLE, &want);
        let tw = token("default/web/http");

        assert!(
            s.starts_with(
                "add table ip corral-svc\ndelete table ip corral-svc\nadd table ip corral-svc\n"
            ),
            "{s}"
        );
        for needle in [
            "add chain ip corral-svc prerouting { type nat hook prerouting priority -100 ; policy accept ; }",
            "add chain ip corral-svc output { type nat hook output priority -100 ; policy accept ; }",
            "add chain ip corral-svc postrouting { type nat hook postrouting priority 100 ; policy accept ; }",
            "add rule ip corral-svc services ip daddr . meta l4proto . th dport vmap @service-ips",
            "add rule ip corral-svc services fib daddr type local meta l4proto . th dport vmap @service-nodeports",
            "add rule ip corral-svc postrouting masquerade fully-random",
        ] {
            assert!(s.contains(needle), "missing {needle}:\n{s}");
        }
        assert!(s.contains(&format!(
            "add rule ip corral-svc svc-{tw} numgen random mod 2 vmap {{ 0 : goto ep-{tw}-0af40002-1f90, 1 : goto ep-{tw}-0af40003-1f90 }}"
        )));
        assert!(s.contains(&format!(
            "add rule ip corral-svc ep-{tw}-0af40002-1f90 ip saddr 10.244.0.2 meta mark set meta mark | 0x4000"
        )));
        assert!(s.contains(&format!(
            "add rule ip corral-svc ep-{tw}-0af40003-1f90 meta l4proto tcp dnat to 10.244.0.3:8080"
        )));
        assert!(s.contains(&format!(
            "add element ip corral-svc service-ips {{ 10.96.0.10 . tcp . 80 : goto svc-{tw} }}"
        )));
        assert!(s.contains(&format!(
            "add element ip corral-svc service-nodeports {{ tcp . 30080 : goto ext-{tw} }}"
        )));
        assert!(s.contains(&format!(
            "add rule ip corral-svc ext-{tw} meta mark set meta mark | 0x4000 goto svc-{tw}"
        )));
        let td = token("kube-system/dns/dns");
        assert!(s.contains(&format!(
            "add rule ip corral-svc svc-{td} goto ep-{td}-0af40004-0035"
        )));
        assert!(s.contains("meta l4proto udp dnat to 10.244.0.4:53"));
        // Two services on one VIP, different protocols; both reject.
        let te = token("default/none/http");
        assert!(s.contains(&format!(
            "add rule ip corral-svc svc-{te} meta l4proto tcp reject with tcp reset"
        )));
        let tu = token("default/none/udp");
        assert!(s.contains(&format!(
            "add rule ip corral-svc svc-{tu} reject with icmp type port-unreachable"
        )));
        assert!(s.contains("{ 10.96.0.11 . udp . 80 : goto svc-"));
        // Elements come after every chain they lead to.
        let first_elem = s.find("add element").unwrap();
        assert!(
            s[first_elem..]
                .lines()
                .all(|l| l.starts_with("add element")),
            "{s}"
        );
    }

    #[test]
    fn a_local_node_port_masquerades_only_this_hosts_connections() {
        let mut r = rule("default/web/http", "10.96.0.10", vec![be("10.244.0.2", 80)]);
        r.node_port = Some(30080);
        let t = token("default/web/http");
        let cluster = full_script(SVC_TABLE, &normalize(&[r.clone()]));
        let ext = lines_with(&cluster, &format!("add rule ip corral-svc ext-{t} "));
        assert_eq!(ext.len(), 1, "{ext:?}");
        assert!(ext[0].ends_with(&format!("meta mark set meta mark | 0x4000 goto svc-{t}")));
        r.keep_client = true;
        let local = full_script(SVC_TABLE, &normalize(&[r.clone()]));
        let ext = lines_with(&local, &format!("add rule ip corral-svc ext-{t} "));
        assert_eq!(ext.len(), 2, "{ext:?}");
        assert!(ext[0].ends_with("fib saddr type local meta mark set meta mark | 0x4000"));
        assert!(ext[1].ends_with(&format!("goto svc-{t}")));
        // Without a node port there is nothing to keep.
        r.node_port = None;
        assert!(!normalize(&[r])["default/web/http"].keep_client);
    }

    #[test]
    fn affinity_adds_a_set_per_endpoint() {
        let mut r = rule(
            "default/web/http",
            "10.96.0.10",
            vec![be("10.244.0.2", 80), be("10.244.0.3", 80)],
        );
        r.affinity_seconds = Some(600);
        let s = full_script(SVC_TABLE, &normalize(&[r]));
        let t = token("default/web/http");
        assert!(s.contains(&format!(
            "add set ip corral-svc aff-{t}-0af40002-0050 {{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }}"
        )));
        assert!(s.contains(&format!(
            "add rule ip corral-svc ep-{t}-0af40002-0050 update @aff-{t}-0af40002-0050 {{ ip saddr }}"
        )));
        let svc_rules = lines_with(&s, &format!("add rule ip corral-svc svc-{t} "));
        assert_eq!(svc_rules.len(), 3, "{svc_rules:?}");
        assert!(svc_rules[0].ends_with(&format!(
            "ip saddr @aff-{t}-0af40002-0050 goto ep-{t}-0af40002-0050"
        )));
        assert!(svc_rules[2].contains("numgen random mod 2"));
        // Zero seconds is no affinity.
        let mut r0 = rule("x", "10.96.0.12", vec![be("10.244.0.2", 80)]);
        r0.affinity_seconds = Some(0);
        assert!(!full_script(SVC_TABLE, &normalize(&[r0])).contains("aff-"));
    }

    #[test]
    fn changing_one_backend_touches_only_that_service() {
        let a = rule(
            "default/a/http",
            "10.96.0.1",
            vec![be("10.244.0.2", 80), be("10.244.0.3", 80)],
        );
        let b = rule("default/b/http", "10.96.0.2", vec![be("10.244.0.4", 80)]);
        let old = normalize(&[a.clone(), b.clone()]);
        let mut a2 = a.clone();
        a2.backends[1] = be("10.244.0.9", 80);
        let (s, n) = diff_script(SVC_TABLE, &old, &normalize(&[a2, b]));
        assert_eq!(n, 1);
        let ta = token("default/a/http");
        assert!(s.lines().all(|l| l.contains(&ta)), "{s}");
        assert!(!s.contains("element"), "the VIP's element stays: {s}");
        assert!(!s.contains("table"), "{s}");
        let expect = [
            format!("flush chain ip corral-svc svc-{ta}"),
            format!("flush chain ip corral-svc ep-{ta}-0af40002-0050"),
            format!("flush chain ip corral-svc ep-{ta}-0af40003-0050"),
            format!("delete chain ip corral-svc ep-{ta}-0af40003-0050"),
            format!("add rule ip corral-svc ep-{ta}-0af40002-0050 ip saddr 10.244.0.2 meta mark set meta mark | 0x4000"),
            format!("add rule ip corral-svc ep-{ta}-0af40002-0050 meta l4proto tcp dnat to 10.244.0.2:80"),
            format!("add chain ip corral-svc ep-{ta}-0af40009-0050"),
            format!("add rule ip corral-svc ep-{ta}-0af40009-0050 ip saddr 10.244.0.9 meta mark set meta mark | 0x4000"),
            format!("add rule ip corral-svc ep-{ta}-0af40009-0050 meta l4proto tcp dnat to 10.244.0.9:80"),
            format!("add rule ip corral-svc svc-{ta} numgen random mod 2 vmap {{ 0 : goto ep-{ta}-0af40002-0050, 1 : goto ep-{ta}-0af40009-0050 }}"),
        ];
        assert_eq!(s.lines().collect::<Vec<_>>(), expect);
    }

    #[test]
    fn unchanged_or_reordered_rules_change_nothing() {
        let a = rule(
            "default/a/http",
            "10.96.0.1",
            vec![be("10.244.0.2", 80), be("10.244.0.3", 80)],
        );
        let old = normalize(std::slice::from_ref(&a));
        let mut a2 = a.clone();
        a2.backends.reverse();
        a2.backends.push(be("10.244.0.2", 80));
        assert_eq!(
            diff_script(SVC_TABLE, &old, &normalize(&[a2])),
            (String::new(), 0)
        );
    }

    #[test]
    fn removed_service_loses_elements_before_chains() {
        let mut a = rule("default/a/http", "10.96.0.1", vec![be("10.244.0.2", 80)]);
        a.node_port = Some(30001);
        a.affinity_seconds = Some(60);
        let b = rule("default/b/http", "10.96.0.2", vec![be("10.244.0.4", 80)]);
        let old = normalize(&[a, b.clone()]);
        let (s, n) = diff_script(SVC_TABLE, &old, &normalize(&[b]));
        assert_eq!(n, 1);
        let ta = token("default/a/http");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "delete element ip corral-svc service-ips { 10.96.0.1 . tcp . 80 }"
        );
        assert_eq!(
            lines[1],
            "delete element ip corral-svc service-nodeports { tcp . 30001 }"
        );
        for c in [
            format!("svc-{ta}"),
            format!("ext-{ta}"),
            format!("ep-{ta}-0af40002-0050"),
        ] {
            let flush = lines
                .iter()
                .position(|l| *l == format!("flush chain ip corral-svc {c}"))
                .unwrap();
            let delete = lines
                .iter()
                .position(|l| *l == format!("delete chain ip corral-svc {c}"))
                .unwrap();
            assert!(flush < delete, "{s}");
        }
        assert_eq!(
            lines.last().unwrap(),
            &format!("delete set ip corral-svc aff-{ta}-0af40002-0050")
        );
    }

    #[test]
    fn moved_vip_and_node_port_swap_elements() {
        let mut a = rule("default/a/http", "10.96.0.1", vec![be("10.244.0.2", 80)]);
        a.node_port = Some(30001);
        let old = normalize(std::slice::from_ref(&a));
        let mut a2 = a.clone();
        a2.vip = Some("10.96.0.7".parse().unwrap());
        a2.node_port = None;
        let (s, _) = diff_script(SVC_TABLE, &old, &normalize(&[a2.clone()]));
        let ta = token("default/a/http");
        assert!(s.starts_with("delete element ip corral-svc service-ips { 10.96.0.1 . tcp . 80 }\ndelete element ip corral-svc service-nodeports { tcp . 30001 }\n"), "{s}");
        assert!(s.contains(&format!("delete chain ip corral-svc ext-{ta}")));
        assert!(s.ends_with(&format!("add element ip corral-svc service-ips {{ 10.96.0.7 . tcp . 80 : goto svc-{ta} }}\n")), "{s}");
        // And back: the node port's chain is made again.
        let (s, _) = diff_script(SVC_TABLE, &normalize(&[a2]), &old);
        assert!(
            s.contains(&format!("add chain ip corral-svc ext-{ta}")),
            "{s}"
        );
        assert!(
            s.contains("add element ip corral-svc service-nodeports { tcp . 30001 : goto ext-"),
            "{s}"
        );
    }

    #[test]
    fn affinity_sets_survive_unless_endpoint_or_timeout_change() {
        let mut a = rule(
            "default/a/http",
            "10.96.0.1",
            vec![be("10.244.0.2", 80), be("10.244.0.3", 80)],
        );
        a.affinity_seconds = Some(60);
        let old = normalize(std::slice::from_ref(&a));
        let ta = token("default/a/http");
        let mut a2 = a.clone();
        a2.backends.pop();
        let (s, _) = diff_script(SVC_TABLE, &old, &normalize(&[a2]));
        assert_eq!(
            lines_with(&s, "set ip corral-svc aff-"),
            [format!("delete set ip corral-svc aff-{ta}-0af40003-0050")]
        );
        let mut a3 = a.clone();
        a3.affinity_seconds = Some(120);
        let (s, _) = diff_script(SVC_TABLE, &old, &normalize(&[a3]));
        assert_eq!(lines_with(&s, "delete set").len(), 2, "{s}");
        assert_eq!(lines_with(&s, "timeout 120s").len(), 2, "{s}");
        // Sets go only after the rules that name them are flushed.
        let last_flush = s.rfind("flush chain").unwrap();
        assert!(s.find("delete set").unwrap() > last_flush, "{s}");
    }

    #[test]
    fn conflicts_keep_the_first_rule() {
        let mut a = rule("default/a/http", "10.96.0.1", vec![]);
        a.node_port = Some(30001);
        let mut b = rule("default/b/http", "10.96.0.2", vec![]);
        b.node_port = Some(30001);
        let c = rule("default/c/http", "10.96.0.1", vec![]);
        let dup = rule("default/a/http", "10.96.0.3", vec![]);
        let got = normalize(&[a, b, c, dup]);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            ["default/a/http", "default/b/http"]
        );
        assert_eq!(got["default/a/http"].node_port, Some(30001));
        assert_eq!(
            got["default/a/http"].vip,
            Some("10.96.0.1".parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(got["default/b/http"].node_port, None);
    }

    #[test]
    fn a_port_on_one_host_address_without_a_vip_is_an_address_entry() {
        let mut r = rule(
            "compose/p/web/127.0.0.1/tcp/8080",
            "10.96.0.1",
            vec![be("10.88.0.2", 80)],
        );
        r.vip = None;
        r.node_port = Some(8080);
        r.node_ip = Some(Ipv4Addr::LOCALHOST);
        let got = normalize(std::slice::from_ref(&r));
        let e = got[&r.id].elements();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "service-ips");
        assert_eq!(e[0].1, "127.0.0.1 . tcp . 8080");
        assert!(e[0].2.starts_with("goto ext-"), "{e:?}");
        let script = full_script(SVC_TABLE, &got);
        assert!(
            script.contains("meta mark set meta mark | 0x4000 goto svc-"),
            "{script}"
        );
        // A second rule on the same address and port loses it; on every address it keeps it.
        let mut same = r.clone();
        same.id = "same".into();
        let mut any = r.clone();
        any.id = "any".into();
        any.node_ip = None;
        let got = normalize(&[r, same, any]);
        assert_eq!(got["same"].node_port, None);
        assert_eq!(got["any"].node_port, Some(8080));
    }

    fn udp(id: &str, vip: &str, node_port: Option<u16>, backends: Vec<Backend>) -> ServiceRule {
        ServiceRule {
            protocol: Protocol::Udp,
            port: 53,
            node_port,
            ..rule(id, vip, backends)
        }
    }

    fn flow(dst: &str, dport: u16, reply: (&str, u16)) -> Flow {
        Flow {
            protocol: conntrack::UDP,
            src: "10.1.0.9".parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: 40000,
            dport,
            reply_src: reply.0.parse().unwrap(),
            reply_sport: reply.1,
            zone: 0,
        }
    }

    #[test]
    fn udp_flows_to_a_lost_endpoint_are_stale_and_others_are_not() {
        let (a, b) = (be("10.1.0.2", 5353), be("10.1.0.3", 5353));
        let old = normalize(&[
            udp("dns", "10.96.0.10", Some(30053), vec![a.clone(), b.clone()]),
            rule("web", "10.96.0.11", vec![a.clone()]),
        ]);
        // `a` leaves both: only the UDP service's flows to it are stale, by VIP and node port.
        let new = normalize(&[
            udp("dns", "10.96.0.10", Some(30053), vec![b.clone()]),
            rule("web", "10.96.0.11", vec![]),
        ]);
        let stale = StaleFlows::between(&old, &new);
        assert_eq!(
            stale.lost,
            vec![
                (Front::Vip("10.96.0.10".parse().unwrap(), 53), a.clone()),
                (Front::NodePort(None, 30053), a.clone()),
            ]
        );
        assert!(stale.untranslated.is_empty());
        assert!(stale.covers(&flow("10.96.0.10", 53, ("10.1.0.2", 5353))));
        assert!(stale.covers(&flow("192.168.1.5", 30053, ("10.1.0.2", 5353))));
        assert!(!stale.covers(&flow("10.96.0.10", 53, ("10.1.0.3", 5353))));
        assert!(!stale.covers(&flow("10.96.0.12", 53, ("10.1.0.2", 5353))));
        assert!(!stale.covers(&flow("10.96.0.10", 53, ("10.96.0.10", 53))));
        // Nothing changed, nothing stale; a deleted service loses all its endpoints.
        assert!(StaleFlows::between(&new, &new).is_empty());
        let gone = StaleFlows::between(&new, &BTreeMap::new());
        assert_eq!(gone.lost.len(), 2);
    }

    #[test]
    fn untranslated_udp_flows_are_stale_once_the_service_has_endpoints() {
        let a = be("10.1.0.2", 5353);
        let none = normalize(&[udp("dns", "10.96.0.10", None, vec![])]);
        let some = normalize(&[udp("dns", "10.96.0.10", None, vec![a.clone()])]);
        for before in [&BTreeMap::new(), &none] {
            let stale = StaleFlows::between(before, &some);
            assert_eq!(
                stale.untranslated,
                vec![Front::Vip("10.96.0.10".parse().unwrap(), 53)]
            );
            assert!(stale.covers(&flow("10.96.0.10", 53, ("10.96.0.10", 53))));
            assert!(!stale.covers(&flow("10.96.0.10", 53, ("10.1.0.2", 5353))));
        }
        // A moved VIP: the old address's flows to `a` are stale, the new one's untranslated.
        let moved = normalize(&[udp("dns", "10.96.0.20", None, vec![a.clone()])]);
        let stale = StaleFlows::between(&some, &moved);
        assert_eq!(
            stale.lost,
            vec![(Front::Vip("10.96.0.10".parse().unwrap(), 53), a)]
        );
        assert_eq!(
            stale.untranslated,
            vec![Front::Vip("10.96.0.20".parse().unwrap(), 53)]
        );
        assert!(StaleFlows::between(&some, &none).untranslated.is_empty());
    }
}
