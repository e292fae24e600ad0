//! The pod streams: `log` (an HTTP body that follows), `exec` and `attach` over websocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`: binary messages whose first byte is the
//! channel — 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resize, and in v5
//! 255 to close a channel), and `portforward`: over websocket in the channel form the Python
//! client uses (per port a data and an error channel, each opened by the port number, the
//! ports in the `ports` query), or kubectl's SPDY, tunneled in a websocket or upgraded to
//! ([`crate::portforward`]).
//!
//! What runs the processes and reads the logs is the node agent's, behind [`PodStreams`].

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::{parse_query, query_all};
use crate::status::ApiError;

/// What a log request asks for.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// Keep streaming while the container runs.
    pub follow: bool,
    /// The previous instance of the container (after a restart).
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines of the last N seconds.
    pub since_seconds: Option<u64>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// At most this many bytes.
    pub limit_bytes: Option<usize>,
}

/// A process started in a container, with its stdio.
pub struct Process {
    /// Its stdin, when asked for.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its stdout (with a terminal: the terminal's output).
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its stderr (none with a terminal).
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Resizes its terminal (columns, rows).
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// Resolves to the exit code when it ends.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

/// A byte stream both ways (a port-forwarded connection).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// The node agent's side of the pod streams.
#[async_trait]
pub trait PodStreams: Send + Sync + 'static {
    /// A container's log as bytes, ending when the log does (or, following, when the
    /// container stops).
    async fn logs(
        &self,
        pod: &Value,
        container: &str,
        req: LogRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<Bytes>, ApiError>;

    /// Starts `command` in a container.
    async fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<Process, ApiError>;

    /// Attaches to a container's main process.
    async fn attach(
        &self,
        pod: &Value,
        container: &str,
        stdin: bool,
        tty: bool,
    ) -> Result<Process, ApiError>;

    /// Opens a TCP connection to the pod's `port`.
    async fn port_forward(&self, pod: &Value, port: u16) -> Result<Box<dyn Duplex>, ApiError>;
}

/// The container a request names (`container=`), or the pod's only one.
fn container_of(
    pod: &Value,
    q: &std::collections::HashMap<String, String>,
) -> Result<String, ApiError> {
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let inits: Vec<String> = pod["spec"]["initContainers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    match q.get("container").filter(|s| !s.is_empty()) {
        Some(c) if names.contains(c) || inits.contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if names.len() == 1 => Ok(names[0].clone()),
        None => {
            // kubectl names the default container by annotation.
            if let Some(d) =
                pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
            {
                return Ok(d.to_string());
            }
            Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    }
}

fn flag(q: &std::collections::HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true") | Some("1"))
}

/// Serves one stream request.
pub async fn serve(
    streams: Arc<dyn PodStreams>,
    sub: &str,
    pod: &Value,
    query: Option<&str>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = parse_query(query);
    match sub {
        "log" => {
            let c = container_of(pod, &q)?;
            let num = |k: &str| -> Result<Option<u64>, ApiError> {
                q.get(k)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<u64>()
                            .map_err(|_| ApiError::bad_request(format!("invalid {k}: {s}")))
                    })
                    .transpose()
            };
            let lr = LogRequest {
                follow: flag(&q, "follow"),
                previous: flag(&q, "previous"),
                tail_lines: num("tailLines")?.map(|n| n as usize),
                since_seconds: num("sinceSeconds")?,
                timestamps: flag(&q, "timestamps"),
                limit_bytes: num("limitBytes")?.map(|n| n as usize),
            };
            let rx = streams.logs(pod, &c, lr).await?;
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            });
            let mut resp = (StatusCode::OK, crate::http::stream_body(stream)).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain"),
            );
            Ok(resp)
        }
        "exec" | "attach" => {
            let c = container_of(pod, &q)?;
            let (stdin, tty) = (flag(&q, "stdin"), flag(&q, "tty"));
            let command = query_all(query, "command");
            if sub == "exec" && command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let (mut parts, _body) = req.into_parts();
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|_| ApiError::bad_request("exec and attach are served over websocket (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not served"))?;
            let ws = ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]);
            let v5 =
                ws.selected_protocol().and_then(|p| p.to_str().ok()) == Some("v5.channel.k8s.io");
            let proc = if sub == "exec" {
                streams.exec(pod, &c, command, stdin, tty).await?
            } else {
                streams.attach(pod, &c, stdin, tty).await?
            };
            Ok(ws.on_upgrade(move |socket| run_process(socket, proc, v5)))
        }
        "portforward" => {
            let (mut parts, _body) = req.into_parts();
            if crate::portforward::wants_spdy(&parts.headers) {
                return crate::portforward::upgrade_spdy(streams, pod, &mut parts);
            }
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|_| {
                    ApiError::bad_request(
                        "port-forward is served over websocket (SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io) or an upgrade to SPDY/3.1",
                    )
                })?;
            let ws = ws.protocols([
                crate::portforward::TUNNEL_PROTOCOL,
                "v4.channel.k8s.io",
                "portforward.k8s.io",
            ]);
            if ws.selected_protocol().and_then(|p| p.to_str().ok())
                == Some(crate::portforward::TUNNEL_PROTOCOL)
            {
                // The ports come in each stream's headers. A message carries a few frames
                // (kubectl's DATA are at most 32 KiB): far less than axum's 64 MiB default.
                let pod = pod.clone();
                let ws = ws.max_message_size(1 << 20).max_frame_size(1 << 20);
                return Ok(ws.on_upgrade(move |socket| {
                    crate::portforward::serve_websocket(socket, streams, pod)
                }));
            }
            let ports: Vec<u16> = query_all(query, "ports")
                .iter()
                .flat_map(|p| p.split(',').map(str::to_string).collect::<Vec<_>>())
                .map(|p| {
                    p.trim()
                        .parse::<u16>()
                        .map_err(|_| ApiError::bad_request(format!("invalid port {p}")))
                })
                .collect::<Result<_, _>>()?;
            if ports.is_empty() {
                return Err(ApiError::bad_request(
                    "query parameter \"ports\" is required",
                ));
            }
            let mut conns = Vec::new();
            for p in &ports {
                conns.push(streams.port_forward(pod, *p).await?);
            }
            Ok(ws.on_upgrade(move |socket| run_port_forward(socket, ports, conns)))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn pump(
    mut r: Box<dyn AsyncRead + Send + Unpin>,
    channel: u8,
    tx: tokio::sync::mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(frame(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn run_process(socket: WebSocket, proc: Process, v5: bool) {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    let Process {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = proc;
    let out = tokio::spawn(pump(stdout, 1, tx.clone()));
    let err = stderr.map(|e| tokio::spawn(pump(e, 2, tx.clone())));
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut stdin = stdin;
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            let Message::Binary(b) = m else {
                if matches!(m, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Some((&ch, data)) = b.split_first() else {
                continue;
            };
            match ch {
                0 => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                4 => {
                    if let (Some(f), Ok(v)) = (&resize, serde_json::from_slice::<Value>(data)) {
                        f(
                            v["Width"].as_u64().unwrap_or(80) as u16,
                            v["Height"].as_u64().unwrap_or(24) as u16,
                        );
                    }
                }
                255 if v5 && data.first() == Some(&0) => {
                    // The client closed stdin.
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });
    let code = exit.await.unwrap_or(-1);
    let _ = out.await;
    if let Some(e) = err {
        let _ = e.await;
    }
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    let _ = tx.send(frame(3, status.to_string().as_bytes())).await;
    drop(tx);
    reader.abort();
    if let Ok(mut sink) = writer.await {
        let close = axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    }
}

async fn run_port_forward(socket: WebSocket, ports: Vec<u16>, conns: Vec<Box<dyn Duplex>>) {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    let mut writers = Vec::new();
    for (i, (port, conn)) in ports.iter().zip(conns).enumerate() {
        let (data_ch, err_ch) = ((i * 2) as u8, (i * 2 + 1) as u8);
        let _ = tx.send(frame(data_ch, &port.to_le_bytes())).await;
        let _ = tx.send(frame(err_ch, &port.to_le_bytes())).await;
        let (r, w) = tokio::io::split(conn);
        writers.push(w);
        tokio::spawn(pump(Box::new(r), data_ch, tx.clone()));
    }
    drop(tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    while let Some(Ok(m)) = source.next().await {
        match m {
            Message::Binary(b) => {
                let Some((&ch, data)) = b.split_first() else {
                    continue;
                };
                if ch % 2 == 0 {
                    if let Some(w) = writers.get_mut((ch / 2) as usize) {
                        if w.write_all(data).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
}
