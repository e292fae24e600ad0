//! [`Outside`]: a network namespace the test makes to play "the outside world" for
//! containers — a host a container reaches through corral's NAT, whose listener reports the
//! source address each connection came from.
//!
//! Layout, one per test (`A.B` a /30 block of 10.125.0.0/17 no address on the host uses):
//!
//! ```text
//! host                                  netns crltest-<hex>
//!   ctest<hex>h 10.125.A.B+1/30  <-veth->  ctest<hex>p 10.125.A.B+2/30
//!   route 10.125.128+A.B+1/32 via B+2       lo: 10.125.128+A.B+1/32 ("remote")
//! ```
//!
//! The remote address is not on the veth's subnet: the host reaches it by the route, as it
//! would a host on the internet, and the namespace has no route back to a container's subnet —
//! a reply reaches a container only when its connection was masqueraded to the host's veth
//! address. Device names do not start with `crl`, the prefix corral's own devices have, so that
//! nothing here is mistaken for (or cleaned up as) corral's.
//!
//! Listeners are the host's `python3` run with `ip netns exec`: busybox `nc` cannot say whom it
//! accepted. `Drop` kills them, deletes the namespace and the veth (and so the route), and
//! never panics.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::process::{describe, run_bounded};

/// The outside world of one test: a namespace joined to the host by a veth pair.
pub struct Outside {
    /// The namespace's name (`ip netns`).
    pub ns: String,
    /// The veth's host end.
    pub host_if: String,
    /// The host end's address: what a masqueraded connection comes from.
    pub host_addr: Ipv4Addr,
    /// The namespace end's address.
    pub peer_addr: Ipv4Addr,
    /// The "remote" address inside the namespace, routed by the host through the veth.
    pub remote: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = run_bounded(Command::new("ip").args(args), None, Duration::from_secs(30));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ip {args:?}: {}", describe(&out)))
    }
}

/// The next /30 block (third octet, fourth octet base) of 10.125.0.0/17 not used by any host
/// address; distinct between threads of this process.
fn free_block() -> (u8, u8) {
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let n = next.get_or_insert_with(|| std::process::id().wrapping_mul(131) % (128 * 64));
    let used = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    for _ in 0..128 * 64 {
        let block = *n % (128 * 64);
        *n = n.wrapping_add(1);
        let third = u8::try_from(block / 64).expect("below 128");
        let fourth = u8::try_from(block % 64 * 4).expect("below 256");
        let host = format!(" 10.125.{third}.{}/", fourth + 1);
        let remote = format!(" 10.125.{}.{}/", third + 128, fourth + 1);
        if !used.contains(&host) && !used.contains(&remote) {
            return (third, fourth);
        }
    }
    panic!("no free /30 in 10.125.0.0/17");
}

impl Default for Outside {
    fn default() -> Self {
        Self::new()
    }
}

impl Outside {
    /// Creates the namespace, the veth pair, the addresses and the host's route.
    ///
    /// # Panics
    /// If a step fails (what was made is removed first, by `Drop`).
    pub fn new() -> Outside {
        let hex: String = crate::sha256_hex(crate::unique_token().as_bytes())
            .chars()
            .take(8)
            .collect();
        let (third, fourth) = free_block();
        let outside = Outside {
            ns: format!("crltest-{hex}"),
            host_if: format!("ctest{hex}h"),
            host_addr: Ipv4Addr::new(10, 125, third, fourth + 1),
            peer_addr: Ipv4Addr::new(10, 125, third, fourth + 2),
            remote: Ipv4Addr::new(10, 125, third + 128, fourth + 1),
        };
        let peer_if = format!("ctest{hex}p");
        let host_cidr = format!("{}/30", outside.host_addr);
        let peer_cidr = format!("{}/30", outside.peer_addr);
        let remote_cidr = format!("{}/32", outside.remote);
        let peer = outside.peer_addr.to_string();
        let ns = outside.ns.as_str();
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", ns],
            vec![
                "link",
                "add",
                &outside.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &peer_if,
                "netns",
                ns,
            ],
            vec!["addr", "add", &host_cidr, "dev", &outside.host_if],
            vec!["link", "set", &outside.host_if, "up"],
            vec!["-n", ns, "addr", "add", &peer_cidr, "dev", &peer_if],
            vec!["-n", ns, "link", "set", &peer_if, "up"],
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "addr", "add", &remote_cidr, "dev", "lo"],
            vec![
                "route",
                "add",
                &remote_cidr,
                "via",
                &peer,
                "dev",
                &outside.host_if,
            ],
        ];
        for step in steps {
            if let Err(e) = ip(&step) {
                drop(outside);
                panic!("setting up the outside namespace: {e}");
            }
        }
        outside
    }

    /// Starts a TCP listener on `0.0.0.0:port` inside the namespace that answers each
    /// connection with `greeting` and a newline, and reports each peer's address.
    ///
    /// # Panics
    /// If it does not start listening within 10 s.
    pub fn listen_tcp(&self, port: u16, greeting: &str) -> OutsideListener {
        const SCRIPT: &str = r#"import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    print("peer " + peer[0], flush=True)
    c.sendall(sys.argv[2].encode() + b"\n")
    c.close()
"#;
        let mut child = self
            .python(SCRIPT)
            .arg(port.to_string())
            .arg(greeting)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start the listener in {}: {e}", self.ns));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let listener = OutsideListener { child, lines };
        match listener.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line == "ready" => listener,
            other => panic!("listener in {} did not start: {other:?}", self.ns),
        }
    }
}

impl Outside {
    /// The host's python running `script` inside the namespace.
    fn python(&self, script: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            crate::networks::HOST_PYTHON,
            "-c",
            script,
        ]);
        c
    }

    /// The body of an HTTP GET of `url` made from inside the namespace (a client on another
    /// host), or why it failed.
    pub fn fetch(&self, url: &str) -> Result<String, String> {
        const SCRIPT: &str = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')";
        let out = run_bounded(self.python(SCRIPT).arg(url), None, Duration::from_secs(20));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(describe(&out))
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth's peer, hence the pair and the route;
        // the explicit link deletion covers a namespace that was never made.
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// A listener started by [`Outside::listen_tcp`]; killed on drop.
pub struct OutsideListener {
    child: Child,
    lines: Receiver<String>,
}

impl OutsideListener {
    /// The source address of the next accepted connection, if one comes within `timeout`.
    pub fn next_peer(&self, timeout: Duration) -> Option<Ipv4Addr> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        line.strip_prefix("peer ")?.parse().ok()
    }

    /// Every connection's source address reported so far, without waiting.
    pub fn peers_so_far(&self) -> Vec<Ipv4Addr> {
        self.lines
            .try_iter()
            .filter_map(|l| l.strip_prefix("peer ")?.parse().ok())
            .collect()
    }
}

impl Drop for OutsideListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
