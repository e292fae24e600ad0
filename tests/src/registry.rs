//! A real registry on loopback, and a throttling proxy in front of it.
//!
//! [`Registry`] runs Debian's `docker-registry` (distribution 2.8) on `127.0.0.1:<free port>`
//! with filesystem storage in a temp dir, so a test can also reach behind its back and tamper
//! with the stored blobs. corral talks plain HTTP to `127.0.0.0/8` (docs/cli-images.md).
//! [`Registry::start_with_auth`] runs one that demands basic auth (an htpasswd file made with
//! `htpasswd -Bbn`, Debian's `apache2-utils`).
//!
//! [`ThrottleProxy`] forwards TCP to an upstream at a chosen rate and counts the bytes it sends
//! to the client: a test kills a pull midway, then checks that the resumed pull transferred
//! fewer bytes than the whole layer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Debian's registry binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// The `htpasswd` tool (Debian's `apache2-utils`), for [`Registry::start_with_auth`].
pub const HTPASSWD_BIN: &str = "htpasswd";

/// The realm of an auth registry's `WWW-Authenticate` challenge.
pub const AUTH_REALM: &str = "corral-test";

/// How long [`Registry::start`] waits for `GET /v2/` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A `docker-registry serve` process, killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Whether it demands credentials (then `GET /v2/` answers 401 when it is ready).
    auth: bool,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers.
    ///
    /// # Panics
    /// If it does not answer within 10 s (with its log in the message).
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// As [`Registry::start`], but every request needs basic auth as `user`/`password` (an
    /// htpasswd file, bcrypt, realm [`AUTH_REALM`]). Ready when `GET /v2/` answers 401.
    ///
    /// # Panics
    /// If `htpasswd` fails (install Debian's `apache2-utils`), or as [`Registry::start`].
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(credentials: Option<(&str, &str)>) -> Self {
        let dir = crate::test_tempdir("registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("create registry storage");
        let port = free_port();
        let auth_section = match credentials {
            None => String::new(),
            Some((user, password)) => {
                let line = crate::process::run_ok(
                    HTPASSWD_BIN,
                    &["-Bbn", user, password],
                    Duration::from_secs(30),
                );
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, line.trim_end().as_bytes()).expect("write htpasswd file");
                format!(
                    "auth:\n  htpasswd:\n    realm: {AUTH_REALM}\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 {auth_section}",
                storage.display()
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {REGISTRY_BIN}: {e}"));
        let mut registry = Registry {
            child,
            port,
            dir,
            auth: credentials.is_some(),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait registry") {
                panic!("docker-registry exited early ({status}):\n{}", self.log());
            }
            // An auth registry answers 401 (with its challenge) once it serves.
            let ready = if self.auth { 401 } else { 200 };
            if http_get_status(&self.addr(), "/v2/").is_some_and(|s| s == ready) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry on {} not ready within {READY_TIMEOUT:?}:\n{}",
                self.addr(),
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True if it was started with [`Registry::start_with_auth`].
    pub fn requires_auth(&self) -> bool {
        self.auth
    }

    /// The filesystem storage root (`rootdirectory` in its config).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the content of blob `digest` (`sha256:<hex>`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Every blob `data` file in the registry's storage, with its size.
    pub fn blob_files(&self) -> Vec<(PathBuf, u64)> {
        crate::files::walk(&self.storage_dir().join("docker/registry/v2/blobs"))
            .into_iter()
            .filter(|(p, m)| m.is_file() && p.file_name().is_some_and(|n| n == "data"))
            .map(|(p, m)| (p, m.len()))
            .collect()
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `GET path` over HTTP/1.0 and returns the status code, or `None` if nothing answers.
pub fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A TCP proxy on `127.0.0.1:<port>` to an upstream, with an optional rate limit on the bytes
/// it sends to clients. Stops (and closes every connection) on drop.
pub struct ThrottleProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    rate: Option<u64>,
    stop: AtomicBool,
    to_client: AtomicU64,
    started: Instant,
    conns: Mutex<Vec<TcpStream>>,
}

/// How long blocking socket calls wait before checking whether the proxy is stopping.
const POLL: Duration = Duration::from_millis(100);
/// Largest write to the client at once; small enough that throttling is smooth.
const CHUNK: usize = 16 * 1024;

impl ThrottleProxy {
    /// Starts a proxy on a free port to `upstream` (`host:port`), sending at most
    /// `bytes_per_sec` to clients (`None`: as fast as it can).
    pub fn start(upstream: &str, bytes_per_sec: Option<u64>) -> Self {
        Self::start_on(0, upstream, bytes_per_sec)
    }

    /// As [`ThrottleProxy::start`], on a given port (0 = any): lets a test restart a proxy at
    /// the same address, as a registry that comes back after a network cut.
    pub fn start_on(port: u16, upstream: &str, bytes_per_sec: Option<u64>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind proxy on 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            rate: bytes_per_sec,
            stop: AtomicBool::new(false),
            to_client: AtomicU64::new(0),
            started: Instant::now(),
            conns: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(listener, shared))
        };
        ThrottleProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes sent to clients so far, over all connections.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for conn in self.shared.conns.lock().expect("conns").drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let shared = Arc::clone(&shared);
                workers.push(thread::spawn(move || serve(client, &shared)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    // Connections were shut down by Drop; each worker notices within POLL.
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve(client: TcpStream, shared: &Shared) {
    let Ok(upstream) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let (Ok(client_w), Ok(upstream_r)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    {
        let mut conns = shared.conns.lock().expect("conns");
        for s in [&client, &upstream] {
            if let Ok(c) = s.try_clone() {
                conns.push(c);
            }
        }
    }
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    for s in [&client, &upstream] {
        let _ = s.set_read_timeout(Some(POLL));
    }
    // Client to upstream: requests, unthrottled, in a second thread.
    thread::scope(|scope| {
        scope.spawn(|| pump(client, upstream, shared, false));
        pump(upstream_r, client_w, shared, true);
    });
}

/// Copies `from` to `to` until EOF, an error or the proxy stops; then shuts both down so the
/// other direction ends too. `to_client` selects throttling and counting.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, to_client: bool) {
    let mut buf = vec![0u8; CHUNK];
    while !shared.stop.load(Ordering::SeqCst) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to_client {
            let total = shared.to_client.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if let Some(rate) = shared.rate {
                // Sleep until the bytes sent so far are within the rate since the proxy started.
                let due = Duration::from_secs_f64(total as f64 / rate.max(1) as f64);
                let elapsed = shared.started.elapsed();
                if due > elapsed {
                    thread::sleep(due - elapsed);
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Overwrites bytes in the middle of `path` (keeping its size): a blob whose content no longer
/// matches its digest.
pub fn corrupt_file(path: &Path) {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(!data.is_empty(), "cannot corrupt empty {}", path.display());
    let mid = data.len() / 2;
    let end = (mid + 64).min(data.len());
    for b in &mut data[mid..end] {
        *b ^= 0xA5;
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
