//! Container probes, the kubelet's `prober`: liveness, readiness and startup, each a task per
//! running container that runs its action every `periodSeconds` after `initialDelaySeconds`
//! (counted from the container's start), bounded by `timeoutSeconds`; `successThreshold`
//! successes in a row make it succeed, `failureThreshold` failures in a row make it fail.
//!
//! Actions:
//! - `exec`: the command in the container, through `corral exec` as a child process (an exec
//!   moves the calling process into the container's namespaces, so it cannot happen in this
//!   one), in a process group of its own that a timeout kills whole; exit 0 succeeds;
//! - `httpGet`: an HTTP/1.1 `GET` over a plain TCP connection to the pod's address (or
//!   `host`), with `httpHeaders`; a status of 200–399 succeeds. `scheme: HTTPS` is checked as
//!   a TCP connection only (no TLS client here), as is a `grpc` probe;
//! - `tcpSocket`: a TCP connection that opens succeeds.
//!
//! Until a startup probe has succeeded the others do not run; a failed liveness or startup
//! probe asks the pod's worker to kill the container (which restarts it as its policy says);
//! readiness sets the container's `ready`. Failures are `Unhealthy` events.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::events::{EventType, PodRef, Recorder};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Restarts the container when it fails.
    Liveness,
    /// Says whether the container takes traffic.
    Readiness,
    /// Holds the others back until the container has started.
    Startup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A command in the container.
    Exec(Vec<String>),
    /// An HTTP GET.
    Http {
        /// The host to connect to (`None`: the pod's address).
        host: Option<String>,
        /// The port.
        port: u16,
        /// The path (with its query).
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// `scheme: HTTPS` (checked as a TCP connection).
        https: bool,
    },
    /// A TCP connection (also what a gRPC probe is checked as).
    Tcp {
        /// The host (`None`: the pod's address).
        host: Option<String>,
        /// The port.
        port: u16,
    },
}

/// A probe, its fields defaulted as the API server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What it does.
    pub action: Action,
    /// Before the first run, from the container's start.
    pub initial_delay: Duration,
    /// Between runs.
    pub period: Duration,
    /// A run that takes longer fails.
    pub timeout: Duration,
    /// Successes in a row that make it succeed.
    pub success_threshold: u32,
    /// Failures in a row that make it fail.
    pub failure_threshold: u32,
}

fn port_of(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(s))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("container {} has no port named {s:?}", c.name))
        }
    }
}

impl ProbeSpec {
    /// Reads a probe of container `c`.
    pub fn from_k8s(p: &Probe, c: &Container) -> Result<ProbeSpec, String> {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let action = if let Some(e) = &p.exec {
            let cmd = e.command.clone().unwrap_or_default();
            if cmd.is_empty() {
                return Err("exec probe without a command".into());
            }
            Action::Exec(cmd)
        } else if let Some(h) = &p.http_get {
            Action::Http {
                host: h.host.clone().filter(|h| !h.is_empty()),
                port: port_of(&h.port, c)?,
                path: h
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|hh| (hh.name.clone(), hh.value.clone()))
                    .collect(),
                https: h.scheme.as_deref() == Some("HTTPS"),
            }
        } else if let Some(t) = &p.tcp_socket {
            Action::Tcp {
                host: t.host.clone().filter(|h| !h.is_empty()),
                port: port_of(&t.port, c)?,
            }
        } else if let Some(g) = &p.grpc {
            Action::Tcp {
                host: None,
                port: u16::try_from(g.port)
                    .map_err(|_| format!("port {} is out of range", g.port))?,
            }
        } else {
            return Err("a probe needs exec, httpGet, tcpSocket or grpc".into());
        };
        Ok(ProbeSpec {
            action,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }
}

/// How one run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Success,
    /// It failed; why, as the kubelet words it.
    Failure(String),
}

/// Where a probe runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's address.
    pub pod_ip: Option<IpAddr>,
    /// The corral binary (`exec` probes).
    pub exe: PathBuf,
    /// The engine's root.
    pub root: PathBuf,
    /// The engine container.
    pub container_id: String,
}

impl Target {
    /// Container `id` of the pod at `pod_ip`, run by `engine`.
    pub fn new(engine: &corral_engine::Engine, pod_ip: Option<IpAddr>, id: &str) -> Target {
        Target {
            pod_ip,
            exe: engine.exe().to_path_buf(),
            root: engine.root().to_path_buf(),
            container_id: id.to_owned(),
        }
    }
}

/// Runs a probe's action once.
pub async fn run_once(action: &Action, target: &Target, timeout: Duration) -> Outcome {
    match action {
        Action::Exec(cmd) => {
            let (cmd, t) = (cmd.clone(), target.clone());
            tokio::task::spawn_blocking(move || exec(&cmd, &t, timeout))
                .await
                .unwrap_or_else(|e| Outcome::Failure(format!("exec probe: {e}")))
        }
        Action::Http {
            host,
            port,
            path,
            headers,
            https,
        } => {
            let Some(host) = host.clone().or(target.pod_ip.map(|i| i.to_string())) else {
                return Outcome::Failure("the pod has no address yet".into());
            };
            if *https {
                return tcp(&host, *port, timeout).await;
            }
            http_get(&host, *port, path, headers, timeout).await
        }
        Action::Tcp { host, port } => {
            let Some(host) = host.clone().or(target.pod_ip.map(|i| i.to_string())) else {
                return Outcome::Failure("the pod has no address yet".into());
            };
            tcp(&host, *port, timeout).await
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: connect: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A plain HTTP/1.1 GET; its status code.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let addr = host_port(host, port);
    let url = format!("http://{addr}{path}");
    let run = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {addr}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            req.push_str("User-Agent: kube-probe/1.37\r\n");
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            req.push_str("Accept: */*\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 8192 {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.lines().next().unwrap_or("");
        parse_status(line).ok_or_else(|| format!("malformed HTTP response {line:?}"))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// The code of an HTTP status line (`HTTP/1.1 200 OK`).
pub fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// An exec probe: `corral --root ROOT exec ID CMD...`, bounded by the probe's timeout
/// (the engine's runner, the one health checks use; blocking).
fn exec(cmd: &[String], t: &Target, timeout: Duration) -> Outcome {
    use corral_engine::health::{exec_bounded, ExecRun};
    match exec_bounded(&t.exe, &t.root, &t.container_id, cmd, timeout, 10 * 1024) {
        Err(e) => Outcome::Failure(format!("starting the exec probe: {e}")),
        Ok(ExecRun::TimedOut) => Outcome::Failure(format!("command {:?} timed out", cmd.join(" "))),
        Ok(ExecRun::Exited { code: 0, .. }) => Outcome::Success,
        Ok(ExecRun::Exited { code, output }) => {
            let text = String::from_utf8_lossy(&output).trim().to_owned();
            Outcome::Failure(if text.is_empty() {
                format!("command {:?} exited with {code}", cmd.join(" "))
            } else {
                text
            })
        }
    }
}

/// What a container's probes have found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    /// The startup probe succeeded (or there is none).
    pub started: bool,
    /// The readiness probe succeeds (or there is none).
    pub ready: bool,
    /// A liveness or startup probe failed: the container is to be killed, with this message.
    pub kill: Option<String>,
}

/// Counts runs against the thresholds: `Some(result)` when a threshold is crossed.
#[derive(Debug, Default)]
pub struct Counter {
    successes: u32,
    failures: u32,
}

impl Counter {
    /// Adds one run; `Some(true)`/`Some(false)` when it makes the probe succeed or fail.
    pub fn add(&mut self, ok: bool, spec: &ProbeSpec) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= spec.success_threshold).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= spec.failure_threshold).then_some(false)
        }
    }
}

/// The probes of one run of a container: their tasks and what they found. Dropping it
/// stops them.
pub(crate) struct Probes {
    results: Arc<Mutex<Results>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Who to tell about failures.
#[derive(Clone)]
pub(crate) struct Reporter {
    /// The event recorder.
    pub events: Arc<Recorder>,
    /// The pod.
    pub pod: PodRef,
    /// The container's field path (`spec.containers{web}`).
    pub field_path: String,
}

impl Probes {
    /// Starts the probes of container `c`'s run that started at `started_at`.
    pub fn start(
        c: &Container,
        target: Target,
        started_at: SystemTime,
        reporter: Reporter,
    ) -> Result<Probes, String> {
        let specs = [
            (Kind::Startup, c.startup_probe.as_ref()),
            (Kind::Liveness, c.liveness_probe.as_ref()),
            (Kind::Readiness, c.readiness_probe.as_ref()),
        ];
        let mut parsed = Vec::new();
        for (k, p) in specs {
            if let Some(p) = p {
                parsed.push((
                    k,
                    ProbeSpec::from_k8s(p, c).map_err(|e| format!("{} probe: {e}", k.name()))?,
                ));
            }
        }
        let has_startup = parsed.iter().any(|(k, _)| *k == Kind::Startup);
        let has_readiness = parsed.iter().any(|(k, _)| *k == Kind::Readiness);
        let results = Arc::new(Mutex::new(Results {
            started: !has_startup,
            ready: !has_readiness,
            kill: None,
        }));
        let tasks = parsed
            .into_iter()
            .map(|(kind, spec)| {
                tokio::spawn(probe_loop(
                    kind,
                    spec,
                    target.clone(),
                    started_at,
                    results.clone(),
                    reporter.clone(),
                ))
            })
            .collect();
        Ok(Probes { results, tasks })
    }

    /// What they found so far.
    pub fn results(&self) -> Results {
        self.results.lock().expect("probe results lock").clone()
    }
}

async fn probe_loop(
    kind: Kind,
    spec: ProbeSpec,
    target: Target,
    started_at: SystemTime,
    results: Arc<Mutex<Results>>,
    reporter: Reporter,
) {
    let since_start = SystemTime::now()
        .duration_since(started_at)
        .unwrap_or(Duration::ZERO);
    if let Some(wait) = spec.initial_delay.checked_sub(since_start) {
        tokio::time::sleep(wait).await;
    }
    let mut counter = Counter::default();
    let mut ticker = tokio::time::interval(spec.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = results.lock().expect("probe results lock").started;
        match kind {
            Kind::Startup if started => return,
            Kind::Liveness | Kind::Readiness if !started => continue,
            _ => {}
        }
        let outcome = run_once(&spec.action, &target, spec.timeout).await;
        let ok = outcome == Outcome::Success;
        if let Outcome::Failure(msg) = &outcome {
            reporter
                .events
                .record(
                    &reporter.pod,
                    Some(&reporter.field_path),
                    EventType::Warning,
                    "Unhealthy",
                    &format!("{} probe failed: {msg}", kind.name()),
                )
                .await;
        }
        let Some(verdict) = counter.add(ok, &spec) else {
            continue;
        };
        let mut r = results.lock().expect("probe results lock");
        match (kind, verdict) {
            (Kind::Readiness, v) => r.ready = v,
            (Kind::Startup, true) => {
                r.started = true;
                return;
            }
            (Kind::Startup, false) => {
                r.kill = Some("failed startup probe, will be restarted".into());
                return;
            }
            (Kind::Liveness, false) => {
                r.kill = Some("failed liveness probe, will be restarted".into());
                return;
            }
            (Kind::Liveness, true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "web", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                "httpHeaders": [{"name": "X-A", "value": "b"}]},
                "initialDelaySeconds": 3, "failureThreshold": 2},
            "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1},
            "startupProbe": {"exec": {"command": ["true"]}}
        }))
        .unwrap()
    }

    #[test]
    fn probes_parse_with_defaults_and_named_ports() {
        let c = container();
        let l = ProbeSpec::from_k8s(c.liveness_probe.as_ref().unwrap(), &c).unwrap();
        assert_eq!(
            l.action,
            Action::Http {
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "b".into())],
                https: false
            }
        );
        assert_eq!(l.initial_delay, Duration::from_secs(3));
        assert_eq!(l.period, Duration::from_secs(10));
        assert_eq!(l.timeout, Duration::from_secs(1));
        assert_eq!((l.success_threshold, l.failure_threshold), (1, 2));
        let r = ProbeSpec::from_k8s(c.readiness_probe.as_ref().unwrap(), &c).unwrap();
        assert_eq!(
            r.action,
            Action::Tcp {
                host: None,
                port: 9000
            }
        );
        let s = ProbeSpec::from_k8s(c.startup_probe.as_ref().unwrap(), &c).unwrap();
        assert_eq!(s.action, Action::Exec(vec!["true".into()]));
        let mut bad = c.clone();
        bad.ports = None;
        assert!(ProbeSpec::from_k8s(c.liveness_probe.as_ref().unwrap(), &bad).is_err());
    }

    #[test]
    fn thresholds_count_runs_in_a_row() {
        let c = container();
        let mut spec = ProbeSpec::from_k8s(c.liveness_probe.as_ref().unwrap(), &c).unwrap();
        spec.success_threshold = 2;
        let mut k = Counter::default();
        assert_eq!(k.add(false, &spec), None);
        assert_eq!(k.add(true, &spec), None);
        assert_eq!(k.add(false, &spec), None);
        assert_eq!(k.add(false, &spec), Some(false));
        assert_eq!(k.add(true, &spec), None);
        assert_eq!(k.add(true, &spec), Some(true));
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status("SSH-2.0"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in [200, 500] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /ok HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("X-A: b\r\n"));
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let h = [("X-A".to_string(), "b".to_string())];
        let t = Duration::from_secs(2);
        assert_eq!(
            http_get("127.0.0.1", port, "/ok", &h, t).await,
            Outcome::Success
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/ok", &h, t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        server.await.unwrap();
        // A port that is held but not listened on refuses (a freed port could be taken by
        // another test meanwhile).
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let cport = closed.local_addr().unwrap().port();
        assert!(matches!(
            tcp("127.0.0.1", cport, t).await,
            Outcome::Failure(_)
        ));
    }
}
