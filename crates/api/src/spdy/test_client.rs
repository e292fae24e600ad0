//! A SPDY client for the unit tests, frame by frame: it sends exactly what a test says and
//! shows every frame the server sends.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::{Decoder, Encoder, Frame, Headers};

pub(crate) struct Client {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl Client {
    /// A client and the server's end of its connection.
    pub(crate) fn new() -> (Client, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(ours);
        let c = Client {
            r,
            w,
            enc: Encoder::new(),
            dec: Decoder::new(),
            buf: BytesMut::new(),
        };
        (c, theirs)
    }

    pub(crate) async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(&f, &mut out).unwrap();
        self.w.write_all(&out).await.unwrap();
    }

    pub(crate) async fn raw(&mut self, b: &[u8]) {
        self.w.write_all(b).await.unwrap();
    }

    pub(crate) async fn open(&mut self, stream: u32, headers: &[(&str, &str)]) {
        let headers = Headers(
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        self.send(Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers,
        })
        .await;
    }

    pub(crate) async fn data(&mut self, stream: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream,
            data: Bytes::copy_from_slice(data),
            fin,
        })
        .await;
    }

    /// The next frame the server sends; `None` at the end of the connection. Panics after
    /// 10 s of nothing.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.r.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("a frame within 10 s")
    }

    /// The next frame that is not a WINDOW_UPDATE.
    pub(crate) async fn next_but_updates(&mut self) -> Option<Frame> {
        loop {
            match self.next().await {
                Some(Frame::WindowUpdate { .. }) => continue,
                other => return other,
            }
        }
    }

    /// `stream`'s data up to its FIN (or once `n` bytes arrived), other frames ignored.
    pub(crate) async fn read_data(&mut self, stream: u32, n: Option<usize>) -> Vec<u8> {
        let mut got = Vec::new();
        loop {
            if n.is_some_and(|n| got.len() >= n) {
                return got;
            }
            match self.next().await {
                Some(Frame::Data {
                    stream: s,
                    data,
                    fin,
                }) if s == stream => {
                    got.extend_from_slice(&data);
                    if fin {
                        return got;
                    }
                }
                Some(_) => {}
                None => panic!(
                    "connection ended after {} bytes of stream {stream}",
                    got.len()
                ),
            }
        }
    }

    /// Ends the client's side of the connection.
    pub(crate) async fn close(&mut self) {
        let _ = self.w.shutdown().await;
    }
}
