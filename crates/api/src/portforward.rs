//! `kubectl port-forward`: the kubelet's port-forward protocol (`portforward.k8s.io`, as
//! `pkg/kubelet/cri/streaming/portforward/httpstream.go` serves it) over a SPDY/3.1 session
//! ([`crate::spdy::session`]), reached two ways:
//!
//! - tunneled in a websocket whose subprotocol is `SPDY/3.1+portforward.k8s.io`, each binary
//!   message carrying the connection's next bytes (client-go's tunneling dialer, kubectl's
//!   default since 1.31), and
//! - a plain HTTP/1.1 `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version:
//!   portforward.k8s.io`, kubectl's fallback when the websocket upgrade fails.
//!
//! Each connection kubectl accepts locally opens a pair of streams that share a `requestid`
//! header: `streamtype: error` and `streamtype: data`, both naming the pod's `port`. Once a
//! pair is whole, the data stream is copied both ways to a TCP connection to the pod's port
//! (made by the node agent, [`PodStreams::port_forward`]), half-closes passed on as FIN and
//! `shutdown`; a failure is written as text to the error stream, which ends with the forward.
//! Any number of pairs share one session; a pair not completed within the creation timeout
//! is dropped.
//!
//! Limits: errors while copying (a reset by the pod) are not reported on the error stream:
//! kubectl 1.37 ends the whole port-forward on any error text, and a peer's reset is no
//! reason to. The websocket channel form the Python client uses is in [`crate::streams`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use crate::spdy::rst;
use crate::spdy::session::{self, RecvHalf, SendHalf, Stream};
use crate::status::ApiError;
use crate::streams::PodStreams;

/// The port-forward protocol.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The websocket subprotocol that tunnels SPDY carrying it.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long a pair's first stream waits for the second (the kubelet's default).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// The header that names the stream protocol in a plain SPDY upgrade.
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether the request asks for a plain SPDY upgrade.
pub fn wants_spdy(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .any(|h| {
            h.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("SPDY/3.1"))
        })
}

/// Answers a plain `Upgrade: SPDY/3.1` with 101 and serves port-forward on the upgraded
/// connection.
pub fn upgrade_spdy(
    streams: Arc<dyn PodStreams>,
    pod: &Value,
    parts: &mut http::request::Parts,
) -> Result<Response, ApiError> {
    // As the kubelet's handshake: a client that names protocols must name this one.
    let offered: Vec<&str> = parts
        .headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    if !offered.is_empty() && !offered.contains(&PROTOCOL) {
        return Err(ApiError::forbidden(format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{PROTOCOL}\"]"
        )));
    }
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError::bad_request("this connection cannot be upgraded to SPDY: use HTTP/1.1")
        })?;
    let pod = Arc::new(pod.clone());
    let span = forward_span(&pod);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    serve(io, streams, pod, PAIR_TIMEOUT).await;
                }
                Err(e) => tracing::debug!("SPDY upgrade: {e}"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL));
    Ok(resp)
}

/// Serves port-forward on a websocket that tunnels SPDY.
pub async fn serve_websocket(socket: WebSocket, streams: Arc<dyn PodStreams>, pod: Value) {
    let pod = Arc::new(pod);
    let span = forward_span(&pod);
    serve(websocket_bytes(socket), streams, pod, PAIR_TIMEOUT)
        .instrument(span)
        .await
}

fn forward_span(pod: &Value) -> tracing::Span {
    let m = &pod["metadata"];
    tracing::info_span!(
        "portforward",
        namespace = m["namespace"].as_str().unwrap_or(""),
        pod = m["name"].as_str().unwrap_or("")
    )
}

/// The websocket as the byte stream its binary messages carry, in order. A close (or the
/// end of the socket) is the end of the bytes; the end of the bytes written closes it.
fn websocket_bytes(socket: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut source) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // A text message has no place in the tunnel.
                Message::Close(_) | Message::Text(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    });
    theirs
}

/// The streams of one forwarded connection, as they arrive.
struct Pair {
    since: Instant,
    data: Option<(u16, RecvHalf, SendHalf)>,
    error: Option<SendHalf>,
}

/// Serves port-forward over a SPDY session on `io` until the client ends it.
pub async fn serve<T>(io: T, streams: Arc<dyn PodStreams>, pod: Arc<Value>, pair_timeout: Duration)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut incoming = session::serve(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(
        pair_timeout.clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    loop {
        tokio::select! {
            s = incoming.recv() => {
                let Some(s) = s else { break };
                if let Some(pair) = accept(s, &mut pairs) {
                    tokio::spawn(
                        forward(streams.clone(), pod.clone(), pair).in_current_span(),
                    );
                }
            }
            _ = tick.tick() => {
                let expired: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.since.elapsed() >= pair_timeout)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in expired {
                    let Some(p) = pairs.remove(&id) else { continue };
                    tracing::debug!(request = %id, "timed out waiting for streams");
                    if let Some(mut e) = p.error {
                        tokio::spawn(async move {
                            let msg = format!("request {id}: timed out waiting for streams");
                            if e.send(msg.as_bytes()).await.is_ok() {
                                let _ = e.finish().await;
                            }
                        });
                    }
                    // A lone data stream is reset as its halves drop.
                }
            }
        }
    }
}

/// Takes a new stream: refused if its headers are wrong, else answered and filed under its
/// request; returns the pair it completes.
fn accept(s: Stream, pairs: &mut HashMap<String, Pair>) -> Option<(String, Pair)> {
    let h = s.headers();
    let port = h
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let kind = h.get("streamtype").unwrap_or("").to_string();
    let (Some(port), "error" | "data") = (port, kind.as_str()) else {
        tracing::debug!(headers = ?h, "port-forward stream without a valid port or type");
        s.reset(rst::CANCEL);
        return None;
    };
    // Clients older than request ids: the kubelet's guess from the stream ids.
    let request = match h.get("requestid").filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None if kind == "error" => s.id().to_string(),
        None => s.id().saturating_sub(2).to_string(),
    };
    let pair = pairs.entry(request.clone()).or_insert_with(|| Pair {
        since: Instant::now(),
        data: None,
        error: None,
    });
    let taken = if kind == "error" {
        pair.error.is_some()
    } else {
        pair.data.is_some()
    };
    if taken {
        tracing::debug!(request = %request, "{kind} stream already assigned");
        s.reset(rst::PROTOCOL_ERROR);
        return None;
    }
    let (recv, send) = s.reply();
    if kind == "error" {
        // The client only reads it.
        drop(recv);
        pair.error = Some(send);
    } else {
        pair.data = Some((port, recv, send));
    }
    if pair.data.is_some() && pair.error.is_some() {
        return pairs.remove_entry(&request);
    }
    None
}

/// Forwards one connection: the data stream to and from the pod's port.
async fn forward(streams: Arc<dyn PodStreams>, pod: Arc<Value>, (request, pair): (String, Pair)) {
    let (Some((port, mut recv, mut send)), Some(mut error)) = (pair.data, pair.error) else {
        return;
    };
    let conn = match streams.port_forward(&pod, port).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(request = %request, port, "port-forward: {}", e.message);
            if error.send(e.message.as_bytes()).await.is_ok() {
                let _ = error.finish().await;
            }
            let _ = send.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    // Client to pod; true when the stream was reset (the forward is over).
    let up = async {
        loop {
            match recv.recv().await {
                Ok(Some(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        return false;
                    }
                }
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    return false;
                }
                Err(_) => return true,
            }
        }
    };
    // Pod to client.
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = send.finish().await;
                    return;
                }
                Ok(n) => {
                    if send.send(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(request = %request, port, "port-forward: reading the pod: {e}");
                    return;
                }
            }
        }
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            reset = &mut up, if !up_done => {
                up_done = true;
                if reset {
                    break;
                }
            }
            _ = &mut down, if !down_done => down_done = true,
        }
    }
    let _ = error.finish().await;
}

#[cfg(test)]
mod tests;
