//! End-to-end tests of `corral serve`'s pod streams, driven by the real clients a user runs:
//! `kubectl port-forward` (SPDY/3.1 tunneled in a websocket, and the plain SPDY upgrade
//! kubectl falls back to), the official Python client's port-forward and exec, `kubectl exec
//! -it` on a real terminal and `kubectl logs -f`. What they check is what the user sees: the
//! pod's page through the forwarded port, large transfers whole, the exit code, the terminal
//! echoing, log lines as they are written.
//!
//! Each test runs its own server (its own port, world and network); the harness's guard
//! deletes the pods and stops the server, and a guard here kills the kubectl it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::networks::free_tcp_port;
use corral_e2e::serve::{venv_bin, Serve};
use corral_e2e::{find_tool, report_skip};

/// A pod serving `/www` over HTTP on port 80 (`index.html` and a 2 MB `big`) and echoing
/// whatever it gets on port 9000; ready once port 80 answers.
const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox:test
    command:
    - sh
    - -c
    - |
      mkdir -p /www
      echo hello-from-the-pod > /www/index.html
      busybox seq 1 300000 > /www/big
      nc -ll -p 9000 -e cat &
      exec httpd -f -p 80 -h /www
    readinessProbe:
      tcpSocket: {port: 80}
      periodSeconds: 1
"#;

/// What `busybox seq 1 300000` prints: the pod's `/www/big`.
fn big_page() -> Vec<u8> {
    (1..=300_000)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn start_web(test: &str) -> Option<Serve> {
    let s = Serve::start(test)?;
    s.apply(WEB, &[]);
    s.wait_ready("default", "web");
    Some(s)
}

/// A client process the test started, killed by its pid when the guard drops, with its
/// output in files.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    fn spawn(mut cmd: Command, dir: PathBuf, name: &str) -> Running {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("start the client");
        Running { child, out, err }
    }

    fn output(&self) -> (String, String) {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        (read(&self.out), read(&self.err))
    }

    /// Waits until the output holds `what`, failing with both outputs.
    fn wait_for(&mut self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // Whether it ended, before reading what it wrote up to then.
            let exited = self.child.try_wait().ok().flatten();
            let (out, err) = self.output();
            if out.contains(what) || err.contains(what) {
                return;
            }
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no {what:?} (exit {exited:?})\nstdout: {out}\nstderr: {err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it by its pid.
    fn kill(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// `kubectl port-forward pod/web` of `ports`, once it says it forwards; `websockets` false
/// makes kubectl use the plain SPDY upgrade (its fallback).
fn port_forward(s: &Serve, ports: &[String], websockets: bool) -> Running {
    let mut cmd = Command::new(venv_bin("kubectl").unwrap());
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
        .args(["port-forward", "-v=4", "pod/web"])
        .args(ports);
    let name = if websockets { "pf-ws" } else { "pf-spdy" };
    let mut pf = Running::spawn(cmd, s.world.path(""), name);
    for p in ports {
        let local = p.split(':').next().unwrap();
        pf.wait_for(
            &format!("Forwarding from 127.0.0.1:{local}"),
            Duration::from_secs(30),
        );
    }
    pf
}

/// An HTTP/1.0 GET of `path` on local `port`: the status line and the body.
fn http_get(port: u16, path: &str) -> (String, Vec<u8>) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    c.read_to_end(&mut resp).expect("read the response");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {:?}", String::from_utf8_lossy(&resp)));
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.lines().next().unwrap_or("").to_string();
    (status, resp[split + 4..].to_vec())
}

/// Sends `payload` to the pod's echo port through local `port` while reading the echo.
fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = c.try_clone().unwrap();
    let sent = payload.to_vec();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read the echo");
    writer.join().unwrap();
    got
}

fn assert_page(port: u16, s: &Serve, pf: &Running) {
    let (status, body) = http_get(port, "/index.html");
    assert!(
        status.contains("200") && body == b"hello-from-the-pod\n",
        "{status}: {:?}\nkubectl: {:?}\nserver log:\n{}",
        String::from_utf8_lossy(&body),
        pf.output(),
        s.log()
    );
}

#[test]
fn kubectl_port_forward_reaches_the_pod() {
    let test = "kubectl_port_forward_reaches_the_pod";
    let Some(s) = start_web(test) else { return };
    let (web, echo, closed) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let mut pf = port_forward(
        &s,
        &[
            format!("{web}:80"),
            format!("{echo}:9000"),
            format!("{closed}:81"),
        ],
        true,
    );

    assert_page(web, &s, &pf);
    // A second connection, then several at once.
    assert_page(web, &s, &pf);
    let at_once: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get(web, "/index.html")))
        .collect();
    for t in at_once {
        let (status, body) = t.join().unwrap();
        assert!(
            status.contains("200") && body == b"hello-from-the-pod\n",
            "{status}"
        );
    }

    // 2 MB from the pod, and 3 MiB to it and back, whole.
    let (status, body) = http_get(web, "/big");
    assert!(status.contains("200"), "{status}");
    assert!(
        body == big_page(),
        "the big page came back {} bytes",
        body.len()
    );
    let payload: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let echoed = echo_through(echo, &payload);
    assert!(
        echoed == payload,
        "{} of {} bytes echoed",
        echoed.len(),
        payload.len()
    );

    // The connections went through SPDY tunneled in a websocket, not the fallback.
    let (_, err) = pf.output();
    assert!(
        err.contains("Negotiation complete") && err.contains("portforward.k8s.io"),
        "{err}"
    );

    // Nothing listens on 81: the connection closes and kubectl says why. kubectl then ends the
    // whole port-forward (client-go closes the session on any error sent to it), as it does
    // against a kubelet.
    let mut c = TcpStream::connect(("127.0.0.1", closed)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut nothing = Vec::new();
    let _ = c.read_to_end(&mut nothing);
    assert!(nothing.is_empty(), "{nothing:?}");
    pf.wait_for(
        "error forwarding port 81 to pod web: Connection refused",
        Duration::from_secs(30),
    );
    pf.wait_for("lost connection to pod", Duration::from_secs(30));
    pf.kill();
    // The server serves the next one.
    let again = free_tcp_port();
    let mut pf = port_forward(&s, &[format!("{again}:80")], true);
    assert_page(again, &s, &pf);
    pf.kill();
}

#[test]
fn kubectl_port_forward_over_plain_spdy_reaches_the_pod() {
    let test = "kubectl_port_forward_over_plain_spdy_reaches_the_pod";
    let Some(s) = start_web(test) else { return };
    let (web, echo) = (free_tcp_port(), free_tcp_port());
    let mut pf = port_forward(&s, &[format!("{web}:80"), format!("{echo}:9000")], false);
    assert_page(web, &s, &pf);
    let (_, err) = pf.output();
    assert!(
        !err.contains("WebSocket"),
        "kubectl tried a websocket: {err}"
    );
    let (status, body) = http_get(web, "/big");
    assert!(
        status.contains("200") && body == big_page(),
        "{status}: {} bytes",
        body.len()
    );
    let payload: Vec<u8> = (0..2u32 << 20).map(|i| (i % 249) as u8).collect();
    assert!(echo_through(echo, &payload) == payload);
    pf.kill();
}

#[test]
fn python_client_port_forwards_and_execs() {
    let test = "python_client_port_forwards_and_execs";
    if venv_bin("python3").is_none() {
        report_skip(test, "no .venv python (run scripts/setup.sh)");
        return;
    }
    let Some(s) = start_web(test) else { return };
    let script = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import portforward, stream
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()

pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports="80")
sock = pf.socket(80)
sock.settimeout(30)
sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")
reply = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    reply += chunk
sock.close()
assert reply.startswith(b"HTTP/1.") and reply.endswith(b"\r\n\r\nhello-from-the-pod\n"), reply
assert pf.error(80) is None, pf.error(80)
pf.close()

resp = stream(v1.connect_get_namespaced_pod_exec, "web", "default",
              command=["sh", "-c", "echo out-$((6*7)); echo oops >&2; exit 3"],
              stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
resp.run_forever(timeout=60)
out, err = resp.read_stdout(), resp.read_stderr()
assert out == "out-42\n", repr(out)
assert err == "oops\n", repr(err)
assert resp.returncode == 3, resp.returncode
print("ok")
"#;
    s.python(script);
}

#[test]
fn kubectl_exec_it_gets_a_terminal() {
    let test = "kubectl_exec_it_gets_a_terminal";
    let Some(script) = find_tool("script") else {
        report_skip(test, "no script(1) to give kubectl a terminal");
        return;
    };
    let Some(s) = start_web(test) else { return };
    let kubectl = venv_bin("kubectl").unwrap();
    // script(1) runs kubectl on a terminal of its own; what the test writes is typed.
    let mut child = Command::new(script)
        .args([
            "-qec",
            &format!("{} exec -it web -- sh", kubectl.display()),
            "/dev/null",
        ])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |what: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!(
                    "no {what:?} on the terminal: {seen:?}\nserver log:\n{}",
                    s.log()
                ),
            }
        }
    };
    // The shell's prompt: kubectl has the terminal in raw mode, so what shows from now on
    // is the remote terminal's echo.
    wait_for("# ", &mut seen);
    stdin.write_all(b"busybox tty\n").unwrap();
    wait_for("/dev/pts/", &mut seen);
    stdin.write_all(b"echo typed-$((6*7))\n").unwrap();
    wait_for("typed-42", &mut seen);
    assert!(
        seen.contains("echo typed-$((6*7))"),
        "typed input not echoed: {seen:?}"
    );
    stdin.write_all(b"exit 4\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl exec did not end: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(guard);
    assert_eq!(status.code(), Some(4), "the shell's exit code: {seen:?}");
}

/// Kills a process by its pid when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.0.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn kubectl_logs_follow_shows_lines_as_written_and_ends_with_the_container() {
    let test = "kubectl_logs_follow_shows_lines_as_written_and_ends_with_the_container";
    let Some(s) = Serve::start(test) else { return };
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:test
    command: ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 1; done"]
"#;
    s.apply(pod, &[]);
    s.wait_ready("default", "ticker");
    let mut child = Command::new(venv_bin("kubectl").unwrap())
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        seen.push((Instant::now(), line.unwrap()));
    }
    // The output ended: kubectl ends with the container.
    let status = child.wait().unwrap();
    drop(guard);
    let texts: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        ["tick-1", "tick-2", "tick-3", "tick-4", "tick-5", "tick-6"],
        "{}",
        s.log()
    );
    assert!(status.success(), "{status:?}");
    // Lines came as the container wrote them, a second apart, not all at the end.
    let spread = seen[5].0 - seen[0].0;
    assert!(
        spread >= Duration::from_secs(2),
        "all lines came within {spread:?}"
    );
}
