//! Helpers of the kernel tests: network namespaces and networks that clean up on drop, and
//! sockets opened inside a namespace.

#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use corral_net::{NetworkSpec, Networks};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for interface-like names.
pub fn unique(tag: &str) -> String {
    format!(
        "crl-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
    pub file: File,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let file = File::open(format!("/run/netns/{name}")).unwrap();
        Netns { name, file }
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::move_into_link_name_space(
                    self.file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// A TCP listener bound inside the namespace (it keeps working from any thread).
    pub fn listen(&self, addr: &str) -> TcpListener {
        let addr = addr.to_string();
        self.run(move || TcpListener::bind(addr).unwrap())
    }

    /// Whether a TCP connection from inside the namespace to `addr` succeeds in 500 ms.
    pub fn can_connect(&self, addr: SocketAddr) -> bool {
        self.run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
    }

    /// `ip ...` inside the namespace; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `busybox ping -c1 -W1 ip` inside the namespace.
    pub fn ping(&self, ip: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "busybox", "ping", "-c1", "-W1", ip,
            ])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A network in a throwaway root, removed (forced) on drop with its kernel objects.
pub struct TestNet {
    pub nets: Networks,
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    _root: tempfile::TempDir,
}

impl TestNet {
    pub fn new(tag: &str, subnet: &str, internal: bool) -> TestNet {
        let root = tempfile::tempdir().unwrap();
        let nets = Networks::open(root.path());
        let name = unique(tag);
        let n = nets
            .create(&NetworkSpec {
                name: name.clone(),
                subnet: Some(subnet.into()),
                internal,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("create {subnet}: {}", chain(&e)));
        TestNet {
            nets,
            name,
            bridge: n.bridge,
            subnet: subnet.into(),
            _root: root,
        }
    }

    /// Another network in the same root.
    pub fn sibling(&self, tag: &str, subnet: &str, internal: bool) -> corral_net::Network {
        self.nets
            .create(&NetworkSpec {
                name: unique(tag),
                subnet: Some(subnet.into()),
                internal,
                ..Default::default()
            })
            .unwrap()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Ok(list) = self.nets.list() {
            for n in list {
                let _ = self.nets.remove(&n.name, true);
            }
        }
    }
}

/// The error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Links on the host whose name is one of `names`.
pub fn host_links_named(names: &[&str]) -> Vec<String> {
    let out = Command::new("ip").args(["-br", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| names.contains(&n.as_str()))
        .collect()
}

/// Firewall objects that mention any of `needles`.
pub fn firewall_objects_with(nets: &Networks, needles: &[&str]) -> Vec<String> {
    nets.firewall()
        .leftovers()
        .unwrap()
        .into_iter()
        .filter(|o| needles.iter().any(|n| o.contains(n)))
        .collect()
}
