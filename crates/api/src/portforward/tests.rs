use super::*;
use crate::spdy::test_client::Client;
use crate::spdy::Frame;
use crate::streams::{Duplex, LogRequest, Process};

/// A pod whose port 80 echoes what it reads, upper-cased, and ends when its input does;
/// nothing listens on its other ports.
struct EchoPod;

#[async_trait::async_trait]
impl PodStreams for EchoPod {
    async fn logs(
        &self,
        _: &Value,
        _: &str,
        _: LogRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<Bytes>, ApiError> {
        Err(ApiError::internal("no logs"))
    }

    async fn exec(
        &self,
        _: &Value,
        _: &str,
        _: Vec<String>,
        _: bool,
        _: bool,
    ) -> Result<Process, ApiError> {
        Err(ApiError::internal("no exec"))
    }

    async fn attach(&self, _: &Value, _: &str, _: bool, _: bool) -> Result<Process, ApiError> {
        Err(ApiError::internal("no attach"))
    }

    async fn port_forward(&self, pod: &Value, port: u16) -> Result<Box<dyn Duplex>, ApiError> {
        if port != 80 {
            return Err(ApiError::internal(format!(
                "error forwarding port {port} to pod {}: connection refused",
                pod["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(theirs);
            let mut buf = vec![0u8; 8192];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf[..n].make_ascii_uppercase();
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        });
        Ok(Box::new(ours))
    }
}

fn start(timeout: Duration) -> Client {
    let (c, io) = Client::new();
    let pod = Arc::new(serde_json::json!({"metadata": {"name": "web", "namespace": "default"}}));
    tokio::spawn(serve(io, Arc::new(EchoPod), pod, timeout));
    c
}

async fn open(c: &mut Client, stream: u32, kind: &str, port: &str, request: &str) {
    c.open(
        stream,
        &[("streamtype", kind), ("port", port), ("requestid", request)],
    )
    .await;
}

/// Reads frames until both `data` and `error` streams ended, returning what each carried.
async fn collect(c: &mut Client, data: u32, error: u32) -> (Vec<u8>, Vec<u8>) {
    let (mut d, mut e) = (Vec::new(), Vec::new());
    let (mut d_fin, mut e_fin) = (false, false);
    while !(d_fin && e_fin) {
        match c.next().await {
            Some(Frame::Data {
                stream,
                data: b,
                fin,
            }) if stream == data => {
                d.extend_from_slice(&b);
                d_fin |= fin;
            }
            Some(Frame::Data {
                stream,
                data: b,
                fin,
            }) if stream == error => {
                e.extend_from_slice(&b);
                e_fin |= fin;
            }
            Some(Frame::RstStream { stream, status }) => panic!("stream {stream} reset: {status}"),
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
    (d, e)
}

#[tokio::test]
async fn a_pair_forwards_both_ways_and_ends_with_half_closes() {
    let mut c = start(PAIR_TIMEOUT);
    open(&mut c, 1, "error", "80", "0").await;
    c.data(1, b"", true).await;
    open(&mut c, 3, "data", "80", "0").await;
    c.data(3, b"hello ", false).await;
    c.data(3, b"pod", true).await;
    let (data, error) = collect(&mut c, 3, 1).await;
    assert_eq!(data, b"HELLO POD");
    assert!(error.is_empty(), "{}", String::from_utf8_lossy(&error));
}

#[tokio::test]
async fn pairs_complete_in_either_order_and_run_at_once() {
    let mut c = start(PAIR_TIMEOUT);
    // Request 1's data stream first, then request 2 whole, then request 1's error stream.
    open(&mut c, 1, "data", "80", "1").await;
    open(&mut c, 3, "error", "80", "2").await;
    open(&mut c, 5, "data", "80", "2").await;
    open(&mut c, 7, "error", "80", "1").await;
    c.data(1, b"first", true).await;
    c.data(5, b"second", true).await;
    let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut fins = 0;
    while fins < 4 {
        match c.next().await {
            Some(Frame::Data { stream, data, fin }) => {
                got.entry(stream).or_default().extend_from_slice(&data);
                fins += fin as usize;
            }
            Some(Frame::RstStream { stream, .. }) => panic!("stream {stream} reset"),
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
    assert_eq!(got[&1], b"FIRST");
    assert_eq!(got[&5], b"SECOND");
}

#[tokio::test]
async fn a_port_nothing_listens_on_gets_the_error_and_others_go_on() {
    let mut c = start(PAIR_TIMEOUT);
    open(&mut c, 1, "error", "81", "0").await;
    open(&mut c, 3, "data", "81", "0").await;
    let (data, error) = collect(&mut c, 3, 1).await;
    assert!(data.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&error),
        "error forwarding port 81 to pod web: connection refused"
    );
    // The session serves the next connection.
    open(&mut c, 5, "error", "80", "1").await;
    open(&mut c, 7, "data", "80", "1").await;
    c.data(7, b"still here", true).await;
    assert_eq!(collect(&mut c, 7, 5).await.0, b"STILL HERE");
}

#[tokio::test]
async fn a_large_transfer_arrives_whole_both_ways() {
    let mut c = start(PAIR_TIMEOUT);
    open(&mut c, 1, "error", "80", "0").await;
    open(&mut c, 3, "data", "80", "0").await;
    let payload: Vec<u8> = (0..(2 << 20)).map(|i: u32| b'a' + (i % 26) as u8).collect();
    // Send and read at once, as a client must (the pod echoes as it reads).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let sent = payload.clone();
    tokio::spawn(async move {
        for piece in sent.chunks(32 * 1024) {
            let _ = tx.send(piece.to_vec()).await;
        }
    });
    let mut got = Vec::new();
    let mut sending = true;
    loop {
        tokio::select! {
            piece = rx.recv(), if sending => match piece {
                Some(p) => c.data(3, &p, false).await,
                None => {
                    c.data(3, b"", true).await;
                    sending = false;
                }
            },
            f = c.next() => match f {
                Some(Frame::Data { stream: 3, data, fin }) => {
                    got.extend_from_slice(&data);
                    if fin {
                        break;
                    }
                }
                Some(Frame::RstStream { stream, .. }) => panic!("stream {stream} reset"),
                Some(_) => {}
                None => panic!("the session ended"),
            },
        }
    }
    assert_eq!(got.len(), payload.len());
    assert!(got == payload.to_ascii_uppercase());
}

#[tokio::test]
async fn a_pair_never_completed_times_out() {
    let mut c = start(Duration::from_millis(100));
    open(&mut c, 1, "error", "80", "9").await;
    let mut error = Vec::new();
    loop {
        match c.next().await {
            Some(Frame::Data {
                stream: 1,
                data,
                fin,
            }) => {
                error.extend_from_slice(&data);
                if fin {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&error),
        "request 9: timed out waiting for streams"
    );
    // A lone data stream is reset.
    open(&mut c, 3, "data", "80", "10").await;
    loop {
        match c.next().await {
            Some(Frame::RstStream { stream: 3, .. }) => break,
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
}

#[tokio::test]
async fn streams_without_a_port_or_type_are_refused() {
    let mut c = start(PAIR_TIMEOUT);
    for (id, headers) in [
        (1, vec![("streamtype", "data"), ("requestid", "0")]),
        (
            3,
            vec![("streamtype", "data"), ("port", "0"), ("requestid", "0")],
        ),
        (
            5,
            vec![("streamtype", "data"), ("port", "http"), ("requestid", "0")],
        ),
        (
            7,
            vec![("streamtype", "stdin"), ("port", "80"), ("requestid", "0")],
        ),
    ] {
        c.open(id, &headers).await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream: id,
                status: rst::CANCEL
            })
        );
    }
    // A second data stream for one request is refused, the first goes on.
    open(&mut c, 9, "data", "80", "4").await;
    open(&mut c, 11, "data", "80", "4").await;
    loop {
        match c.next().await {
            Some(Frame::RstStream { stream, status }) => {
                assert_eq!((stream, status), (11, rst::PROTOCOL_ERROR));
                break;
            }
            Some(Frame::SynReply { stream: 9, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    open(&mut c, 13, "error", "80", "4").await;
    c.data(9, b"ok", true).await;
    assert_eq!(collect(&mut c, 9, 13).await.0, b"OK");
}

#[test]
fn spdy_upgrades_are_recognised() {
    let mut h = HeaderMap::new();
    assert!(!wants_spdy(&h));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert!(!wants_spdy(&h));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    assert!(wants_spdy(&h));
}
