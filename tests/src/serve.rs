//! `corral serve` driven as a Kubernetes user drives a cluster: a server in a world of its
//! own, on a port of its own, with the real `kubectl` from `.venv` (installed by
//! `scripts/setup.sh`) and the kubeconfig the server wrote. The guard deletes every pod
//! through the API, stops the server and removes what is left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::networks::free_tcp_port;
use crate::{report_skip, unique_name, Corral};

/// How long a pod may take to become Ready.
pub const READY: Duration = Duration::from_secs(90);

/// A program of the project's `.venv` (kubectl, python), when setup installed it.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    p.exists().then_some(p)
}

/// A running `corral serve` in a world of its own.
pub struct Serve {
    /// The test's corral world.
    pub world: Corral,
    child: Option<Child>,
    /// The kubeconfig serve wrote.
    pub kubeconfig: PathBuf,
    /// The API's port on 127.0.0.1.
    pub port: u16,
    /// The corral network pods join.
    pub network: String,
}

impl Serve {
    /// Starts a server in a new world with the busybox image and a test network; `None` (after a loud SKIPPED line) when kubectl is missing.
    pub fn start(test: &str) -> Option<Serve> {
        if venv_bin("kubectl").is_none() {
            report_skip(test, "kubectl is not in .venv (run scripts/setup.sh)");
            return None;
        }
        let world = Corral::new();
        world.busybox_image();
        let port = free_tcp_port();
        let kubeconfig = world.path("kubeconfig");
        let network = unique_name("k8s");
        world.create_test_network(&network, 24, &[]);
        let mut s = Serve {
            world,
            child: None,
            kubeconfig,
            port,
            network,
        };
        s.spawn();
        Some(s)
    }

    /// Starts (or restarts) the server process and waits until `/readyz` answers.
    pub fn spawn(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let node = format!("node-{}", self.port);
        let mut cmd = self.world.command(&[
            "serve",
            "--listen",
            &listen,
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
            "--node-name",
            &node,
            "--network",
            &self.network,
        ]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.world.path("serve.log"))
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("start corral serve"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig.exists()
                && self.kubectl(&["get", "--raw", "/readyz"]).status.success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "corral serve did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.world.path("serve.log")).unwrap_or_default()
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(venv_bin("kubectl").unwrap())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut c = Command::new(venv_bin("kubectl").unwrap())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml` (with `extra` flags), asserted to succeed.
    pub fn apply(&self, yaml: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let o = self.kubectl_in(&args, yaml);
        assert!(
            o.status.success(),
            "kubectl apply failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a Python `script` with the project's `.venv` python (check [`venv_bin`] first)
    /// and the kubeconfig's path as its argument; asserts it succeeded and printed `ok`.
    pub fn python(&self, script: &str) {
        let path = self
            .world
            .path(&format!("client-{}.py", crate::unique_token()));
        std::fs::write(&path, script).unwrap();
        let o = Command::new(venv_bin("python3").expect("the .venv python"))
            .arg(&path)
            .arg(&self.kubeconfig)
            .output()
            .expect("run python");
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok"),
            "{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
    }

    /// Runs kubectl with `-o json` and parses what it printed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }

    /// As [`json`](Self::json), but `None` when kubectl fails (the object is not there, for
    /// one), for waits across a deletion.
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["-o", "json"]);
        let o = self.kubectl(&a);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    /// Waits until the pod is Ready, failing with its YAML, the events and the server log.
    pub fn wait_ready(&self, ns: &str, pod: &str) {
        let timeout = format!("--timeout={}s", READY.as_secs());
        let target = format!("pod/{pod}");
        let o = self.kubectl(&["-n", ns, "wait", "--for=condition=Ready", &target, &timeout]);
        assert!(
            o.status.success(),
            "pod {pod} not Ready: {}\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(
                &self
                    .kubectl(&["-n", ns, "get", "pod", pod, "-o", "yaml"])
                    .stdout
            ),
            String::from_utf8_lossy(&self.kubectl(&["-n", ns, "get", "events"]).stdout),
            self.log()
        );
    }

    /// `kubectl -n NS get KIND NAME -o jsonpath=PATH`: what it printed ("" when it failed).
    pub fn jsonpath(&self, ns: &str, kind: &str, name: &str, path: &str) -> String {
        let out = format!("jsonpath={path}");
        let o = self.kubectl(&["-n", ns, "get", kind, name, "-o", &out]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Kills the server with SIGKILL, as a crash does; its pods keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Controllers first, or they make the pods again.
            let _ = self.kubectl(&[
                "delete",
                "horizontalpodautoscalers,cronjobs,jobs,statefulsets,daemonsets,deployments,replicasets,services",
                "--all",
                "-A",
                "--wait=true",
                "--timeout=30s",
            ]);
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "-A",
                "--wait=true",
                "--timeout=60s",
                "--grace-period=1",
            ]);
            let _ = self.kubectl(&[
                "delete",
                "virtualmachines",
                "--all",
                "-A",
                "--wait=true",
                "--timeout=60s",
            ]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever is left (a failed test's pods): removed through corral itself.
        for line in self.world.ok(&["pod", "ls", "-q"]).lines() {
            let _ = self.world.cmd(&["pod", "rm", "-f", line.trim()]);
        }
        for line in self.world.ok(&["ps", "-aq"]).lines() {
            let _ = self.world.cmd(&["rm", "-f", line.trim()]);
        }
        for line in self.world.ok(&["vm", "ls", "-q"]).lines() {
            let _ = self.world.cmd(&["vm", "rm", "-f", line.trim()]);
        }
        let _ = self.world.cmd(&["network", "rm", "-f", &self.network]);
    }
}
