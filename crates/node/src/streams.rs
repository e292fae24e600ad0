//! The pod streams the API server hands to the node agent (kubelet's streaming server):
//! a container's log read from its monitor's json-file log, `exec` and `attach` as the
//! `corral exec` / `corral attach` commands of this same binary (pipes, or a terminal made
//! here with the child as its session leader so resizes reach it), and port-forward as a TCP
//! connection to the pod's address on corral's network.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use corral_api::status::ApiError;
use corral_api::streams::{Duplex, LogRequest, PodStreams, Process};
use serde_json::Value;

use crate::NodeAgent;

/// The node agent's streams.
pub struct Streams {
    agent: Arc<NodeAgent>,
}

impl Streams {
    /// Streams of `agent`'s pods.
    pub fn new(agent: Arc<NodeAgent>) -> Self {
        Streams { agent }
    }

    fn ids(&self, pod: &Value) -> (String, String) {
        let m = &pod["metadata"];
        (
            m["namespace"].as_str().unwrap_or("default").to_string(),
            m["name"].as_str().unwrap_or("").to_string(),
        )
    }

    fn container(&self, pod: &Value, container: &str) -> Result<String, ApiError> {
        let (ns, name) = self.ids(pod);
        self.agent
            .container_id(&ns, &name, Some(container))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn corral(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(self.agent.engine().exe());
        c.arg("--root").arg(self.agent.engine().root()).args(args);
        c.kill_on_drop(true);
        c
    }

    async fn spawn(
        &self,
        mut args: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<Process, ApiError> {
        if tty {
            return self.spawn_tty(args).await;
        }
        if stdin {
            args.insert(1, "-i".into());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.corral(&argv);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting corral {}: {e}", args[0])))?;
        let (tx, exit) = tokio::sync::oneshot::channel();
        let stdin_w = child
            .stdin
            .take()
            .map(|w| Box::new(w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
        let stdout = Box::new(child.stdout.take().expect("piped"));
        let stderr = Box::new(child.stderr.take().expect("piped"));
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
            let _ = tx.send(code);
        });
        Ok(Process {
            stdin: stdin_w,
            stdout,
            stderr: Some(stderr),
            resize: None,
            exit,
        })
    }

    /// A command on a terminal of its own: `setsid --ctty` makes the terminal its controlling
    /// one, so a window-size change reaches it as SIGWINCH.
    async fn spawn_tty(&self, mut args: Vec<String>) -> Result<Process, ApiError> {
        use rustix::pty::{openpt, ptsname, unlockpt, OpenptFlags};
        let err = |e: std::io::Error| ApiError::internal(format!("making a terminal: {e}"));
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| err(e.into()))?;
        rustix::pty::grantpt(&master).map_err(|e| err(e.into()))?;
        unlockpt(&master).map_err(|e| err(e.into()))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| err(e.into()))?;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_string_lossy().as_ref())
            .map_err(err)?;
        args.insert(1, "-i".into());
        args.insert(2, "-t".into());
        let mut cmd = tokio::process::Command::new("setsid");
        cmd.arg("--ctty")
            .arg("--wait")
            .arg(self.agent.engine().exe())
            .arg("--root")
            .arg(self.agent.engine().root())
            .args(&args);
        cmd.kill_on_drop(true);
        cmd.stdin(slave.try_clone().map_err(err)?)
            .stdout(slave.try_clone().map_err(err)?)
            .stderr(slave);
        let mut child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting corral {}: {e}", args[0])))?;
        let master = std::fs::File::from(master);
        let resize_fd = master.try_clone().map_err(err)?;
        let reader = tokio::fs::File::from_std(master.try_clone().map_err(err)?);
        let writer = tokio::fs::File::from_std(master);
        let (tx, exit) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
            let _ = tx.send(code);
        });
        let resize = move |cols: u16, rows: u16| {
            let ws = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = rustix::termios::tcsetwinsize(&resize_fd, ws);
        };
        Ok(Process {
            stdin: Some(Box::new(writer)),
            stdout: Box::new(TtyReader(reader)),
            stderr: None,
            resize: Some(Box::new(resize)),
            exit,
        })
    }
}

/// A terminal's master side: EIO once the other side is closed is its end of file.
struct TtyReader(tokio::fs::File);

impl tokio::io::AsyncRead for TtyReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc_eio()) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

#[async_trait]
impl PodStreams for Streams {
    async fn logs(
        &self,
        pod: &Value,
        container: &str,
        req: LogRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<Bytes>, ApiError> {
        let (ns, name) = self.ids(pod);
        let id = if req.previous {
            self.agent
                .previous_container_id(&ns, &name, Some(container))
                .map_err(|e| ApiError::bad_request(e.to_string()))?
        } else {
            self.container(pod, container)?
        };
        let engine = self.agent.engine().clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::task::spawn_blocking(move || {
            let Ok(cs) = engine.containers() else { return };
            let Ok(cfg) = cs.config(&id) else { return };
            let opts = corral_engine::logs::LogOptions {
                follow: req.follow && !req.previous,
                tail: req.tail_lines,
                since: req
                    .since_seconds
                    .map(|s| SystemTime::now() - Duration::from_secs(s)),
                until: None,
            };
            let running = || {
                cs.load(&id)
                    .is_ok_and(|s| s.status == corral_container::Status::Running)
                    && !tx.is_closed()
            };
            let mut left = req.limit_bytes.unwrap_or(usize::MAX);
            let mut emit = |l: &corral_engine::logs::LogLine| -> std::io::Result<()> {
                let mut s = String::new();
                if req.timestamps && !l.time.is_empty() {
                    s.push_str(&l.time);
                    s.push(' ');
                }
                s.push_str(&l.text);
                let mut b = s.into_bytes();
                if b.len() > left {
                    b.truncate(left);
                }
                left -= b.len();
                if b.is_empty() || tx.blocking_send(Bytes::from(b)).is_err() || left == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "done"));
                }
                Ok(())
            };
            let _ = corral_engine::logs::follow_container(
                &cs.dir(&id),
                &id,
                &cfg.log,
                &opts,
                &running,
                &mut emit,
            );
        });
        Ok(rx)
    }

    async fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<Process, ApiError> {
        let id = self.container(pod, container)?;
        let mut args = vec!["exec".to_string(), id, "--".to_string()];
        args.extend(command);
        self.spawn(args, stdin, tty).await
    }

    async fn attach(
        &self,
        pod: &Value,
        container: &str,
        stdin: bool,
        tty: bool,
    ) -> Result<Process, ApiError> {
        let id = self.container(pod, container)?;
        let mut args = vec!["attach".to_string(), "--sig-proxy=false".to_string(), id];
        if !stdin {
            args.insert(1, "--no-stdin".into());
        }
        let _ = tty;
        self.spawn(args, false, false).await
    }

    async fn port_forward(&self, pod: &Value, port: u16) -> Result<Box<dyn Duplex>, ApiError> {
        let (ns, name) = self.ids(pod);
        let ip = self.agent.pod_ip(&ns, &name).ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} has no address (is it running?)"))
        })?;
        let conn = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| {
                ApiError::internal(format!("error forwarding port {port} to pod {name}: {e}"))
            })?;
        Ok(Box::new(conn))
    }
}
