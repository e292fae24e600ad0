//! A SPDY/3.1 session on the server's side of any byte stream: the streams the client opens
//! come out of [`serve`] as [`Stream`]s, each answered with SYN_REPLY ([`Stream::reply`]) or
//! refused ([`Stream::reset`]), then read ([`RecvHalf`]) and written ([`SendHalf`]) on their
//! own. The server opens no streams of its own.
//!
//! Two tasks per session: the reader decodes frames and routes them (PINGs echoed, SETTINGS
//! and WINDOW_UPDATE applied, DATA to its stream), the writer owns the encoder (so header
//! blocks are compressed in the order they go out) and sends control frames ahead of data.
//!
//! Flow control (§2.6.8): as a stream's reader consumes data, WINDOW_UPDATEs give the window
//! back, for the stream and the session. Data waiting to be read is bounded per stream by the
//! window; past it (a peer that ignores windows) the reader waits, so the transport pushes
//! back. Sending honours the peer's windows once the peer shows it keeps them (a WINDOW_UPDATE
//! or a SETTINGS of the initial window): moby/spdystream, under kubectl and the kubelet, never
//! sends either and never limits what it accepts, so with it the transport alone pushes back
//! — holding it to 64 KiB that it never grants back would stall every transfer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::{goaway, rst, Decoder, Encoder, Frame, FrameError, Headers};

/// The window each side starts with, per stream and for the session (§2.6.8).
pub const INITIAL_WINDOW: u32 = 64 * 1024;
/// A stream's or the session's consumed bytes are granted back once this many add up.
const WINDOW_UPDATE_AT: u32 = INITIAL_WINDOW / 2;
/// Streams open at once; more are refused (REFUSED_STREAM).
pub const MAX_STREAMS: usize = 1024;
/// Control frames waiting to be written; a peer that makes more (PINGs, and not reading
/// the answers) loses the session.
const MAX_CONTROL_QUEUED: usize = 4096;
/// DATA frames are sent at most this long.
const SEND_CHUNK: usize = 32 * 1024;
/// Largest window SPDY allows.
const MAX_WINDOW: i64 = 0x7fff_ffff;

/// The stream was reset, or the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SPDY stream was reset or its session ended")]
pub struct StreamClosed;

struct Entry {
    /// What may still be sent on it.
    send_window: i64,
    /// Where its data goes (and, on a reset, the error); gone after the peer's FIN.
    data: Option<mpsc::UnboundedSender<Result<Bytes, StreamClosed>>>,
    /// Bytes its reader may have waiting: permits taken as data arrives, given back as read.
    credit: Arc<Semaphore>,
    /// Bytes read but not yet granted back.
    unacked: u32,
    /// FIN sent.
    local_done: bool,
    /// FIN received.
    remote_done: bool,
}

struct State {
    streams: HashMap<u32, Entry>,
    /// The highest stream id the peer opened.
    last_peer_stream: u32,
    /// The session's send window.
    send_window: i64,
    /// A new stream's send window (SETTINGS_INITIAL_WINDOW_SIZE).
    initial_window: i64,
    /// The peer keeps flow control (it sent a WINDOW_UPDATE or an initial window).
    enforced: bool,
    /// Session bytes read but not yet granted back.
    unacked: u32,
    /// The peer sent GOAWAY: no new streams.
    going_away: bool,
    closed: bool,
}

struct Conn {
    state: Mutex<State>,
    /// Windows grew, a stream was reset, or the session ended.
    changed: Notify,
    control: mpsc::UnboundedSender<Frame>,
    control_queued: std::sync::atomic::AtomicUsize,
    data: mpsc::Sender<Frame>,
    closed: watch::Sender<bool>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a control frame; false when too many wait (the peer is not reading).
    fn control(&self, f: Frame) -> bool {
        use std::sync::atomic::Ordering;
        if self.control_queued.load(Ordering::Relaxed) >= MAX_CONTROL_QUEUED {
            return false;
        }
        self.control_queued.fetch_add(1, Ordering::Relaxed);
        let _ = self.control.send(f);
        true
    }

    /// Sends RST_STREAM and forgets the stream.
    fn reset(&self, st: &mut State, stream: u32, status: u32) {
        if let Some(e) = st.streams.remove(&stream) {
            aborted(e);
        }
        self.control(Frame::RstStream { stream, status });
        self.changed.notify_waiters();
    }

    /// Ends the session: every stream's reads and writes end, the writer flushes what is
    /// queued (a GOAWAY) and stops.
    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        for (_, e) in st.streams.drain() {
            aborted(e);
        }
        drop(st);
        self.changed.notify_waiters();
        let _ = self.closed.send(true);
    }

    /// `n` bytes of `stream` were read: grant them back once enough add up.
    fn consumed(&self, stream: u32, n: usize) {
        let n = n as u32;
        let mut st = self.lock();
        st.unacked += n;
        if st.unacked >= WINDOW_UPDATE_AT {
            let delta = std::mem::take(&mut st.unacked);
            self.control(Frame::WindowUpdate { stream: 0, delta });
        }
        if let Some(e) = st.streams.get_mut(&stream).filter(|e| !e.remote_done) {
            e.unacked += n;
            if e.unacked >= WINDOW_UPDATE_AT {
                let delta = std::mem::take(&mut e.unacked);
                self.control(Frame::WindowUpdate { stream, delta });
            }
        }
    }

    fn finish_local(&self, stream: u32) {
        let mut st = self.lock();
        if let Some(e) = st.streams.get_mut(&stream) {
            e.local_done = true;
            if e.remote_done {
                st.streams.remove(&stream);
            }
        }
    }

    /// Takes up to `want` bytes of send window for `stream`, waiting while there is none.
    async fn reserve(&self, stream: u32, want: usize) -> Result<usize, StreamClosed> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(StreamClosed);
                }
                let (enforced, session) = (st.enforced, st.send_window);
                let e = st.streams.get_mut(&stream).ok_or(StreamClosed)?;
                if e.local_done {
                    return Err(StreamClosed);
                }
                let n = if enforced {
                    e.send_window.min(session).min(want as i64).max(0) as usize
                } else {
                    want
                };
                if n > 0 {
                    e.send_window -= n as i64;
                    st.send_window -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }
}

/// A stream ended abnormally: its reader gets an error after what was already delivered,
/// and data still arriving is thrown away.
fn aborted(e: Entry) {
    if let Some(tx) = e.data {
        let _ = tx.send(Err(StreamClosed));
    }
    e.credit.close();
}

/// A stream the client opened, not yet answered. Dropped unanswered, it is reset (CANCEL).
pub struct Stream {
    headers: Headers,
    recv: RecvHalf,
    send: SendHalf,
}

impl Stream {
    /// Its id.
    pub fn id(&self) -> u32 {
        self.send.id
    }

    /// The headers it was opened with.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Answers it (SYN_REPLY with no headers) and hands out its two directions.
    pub fn reply(self) -> (RecvHalf, SendHalf) {
        self.send.conn.control(Frame::SynReply {
            stream: self.send.id,
            fin: false,
            headers: Headers::default(),
        });
        (self.recv, self.send)
    }

    /// Refuses it with RST_STREAM `status`.
    pub fn reset(self, status: u32) {
        self.send.reset(status);
    }
}

/// What the client sends on a stream.
pub struct RecvHalf {
    id: u32,
    conn: Arc<Conn>,
    rx: mpsc::UnboundedReceiver<Result<Bytes, StreamClosed>>,
    credit: Arc<Semaphore>,
}

impl RecvHalf {
    /// The next bytes; `Ok(None)` after the client's FIN, an error once the stream is reset
    /// or the session ends.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamClosed> {
        match self.rx.recv().await {
            Some(Ok(b)) => {
                self.credit.add_permits(b.len());
                self.conn.consumed(self.id, b.len());
                Ok(Some(b))
            }
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        // Whatever arrives from now on is thrown away, and its window given back.
        self.credit.close();
        while let Ok(b) = self.rx.try_recv() {
            if let Ok(b) = b {
                self.conn.consumed(self.id, b.len());
            }
        }
    }
}

/// What the server sends on a stream. Dropped before [`SendHalf::finish`], the stream is
/// reset (CANCEL).
pub struct SendHalf {
    id: u32,
    conn: Arc<Conn>,
    done: bool,
}

impl SendHalf {
    /// Sends `data`, within the peer's windows.
    pub async fn send(&mut self, mut data: &[u8]) -> Result<(), StreamClosed> {
        while !data.is_empty() {
            let n = self
                .conn
                .reserve(self.id, data.len().min(SEND_CHUNK))
                .await?;
            let frame = Frame::Data {
                stream: self.id,
                data: Bytes::copy_from_slice(&data[..n]),
                fin: false,
            };
            self.conn.data.send(frame).await.map_err(|_| StreamClosed)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends this direction (an empty DATA frame with FIN).
    pub async fn finish(mut self) -> Result<(), StreamClosed> {
        self.done = true;
        if self.conn.lock().closed {
            return Err(StreamClosed);
        }
        let frame = Frame::Data {
            stream: self.id,
            data: Bytes::new(),
            fin: true,
        };
        let r = self.conn.data.send(frame).await.map_err(|_| StreamClosed);
        self.conn.finish_local(self.id);
        r
    }

    /// Ends the stream both ways with RST_STREAM `status`.
    pub fn reset(mut self, status: u32) {
        self.done = true;
        let mut st = self.conn.lock();
        if !st.closed {
            self.conn.reset(&mut st, self.id, status);
        }
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.conn.lock();
            if !st.closed && st.streams.contains_key(&self.id) {
                self.conn.reset(&mut st, self.id, rst::CANCEL);
            }
        }
    }
}

/// Runs a SPDY/3.1 server session on `io`; the streams the client opens come out of the
/// receiver, which ends with the session.
pub fn serve<T>(io: T) -> mpsc::UnboundedReceiver<Stream>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (data_tx, data_rx) = mpsc::channel(64);
    let (closed_tx, closed_rx) = watch::channel(false);
    let conn = Arc::new(Conn {
        state: Mutex::new(State {
            streams: HashMap::new(),
            last_peer_stream: 0,
            send_window: INITIAL_WINDOW as i64,
            initial_window: INITIAL_WINDOW as i64,
            enforced: false,
            unacked: 0,
            going_away: false,
            closed: false,
        }),
        changed: Notify::new(),
        control: control_tx,
        control_queued: Default::default(),
        data: data_tx,
        closed: closed_tx,
    });
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (r, w) = tokio::io::split(io);
    tokio::spawn(write_loop(conn.clone(), w, control_rx, data_rx, closed_rx));
    tokio::spawn(read_loop(conn, r, incoming_tx));
    incoming_rx
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: Arc<Conn>,
    mut r: R,
    incoming: mpsc::UnboundedSender<Stream>,
) {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let status = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                if let Err(status) = handle(&conn, frame, &incoming).await {
                    break Some(status);
                }
            }
            Ok(None) => {
                buf.reserve(16 * 1024);
                match r.read_buf(&mut buf).await {
                    Ok(0) => break None,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("spdy: read: {e}");
                        break None;
                    }
                }
            }
            Err(FrameError::Stream {
                stream,
                status,
                reason,
            }) => {
                tracing::debug!("spdy: stream {stream}: {reason}");
                let mut st = conn.lock();
                conn.reset(&mut st, stream, status);
            }
            Err(FrameError::Session(why)) => {
                tracing::debug!("spdy: {why}");
                break Some(goaway::PROTOCOL_ERROR);
            }
        }
    };
    if let Some(status) = status {
        let last_stream = conn.lock().last_peer_stream;
        // Sent even past the queue's limit: it is the last frame.
        conn.control_queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = conn.control.send(Frame::GoAway {
            last_stream,
            status,
        });
    }
    conn.close();
}

/// Routes one frame; an error is the GOAWAY status that ends the session.
async fn handle(
    conn: &Arc<Conn>,
    frame: Frame,
    incoming: &mpsc::UnboundedSender<Stream>,
) -> Result<(), u32> {
    match frame {
        Frame::Data { stream, data, fin } => {
            let route = {
                let mut st = conn.lock();
                let last = st.last_peer_stream;
                match st.streams.get_mut(&stream) {
                    Some(e) if e.remote_done => {
                        conn.reset(&mut st, stream, rst::STREAM_ALREADY_CLOSED);
                        None
                    }
                    Some(e) => {
                        let route = (e.data.clone(), e.credit.clone());
                        if fin {
                            e.data = None;
                            e.remote_done = true;
                            if e.local_done {
                                st.streams.remove(&stream);
                            }
                        }
                        Some(route)
                    }
                    // Never opened: an error. Closed already: frames still in flight.
                    None if stream > last || stream % 2 == 0 => {
                        conn.reset(&mut st, stream, rst::INVALID_STREAM);
                        None
                    }
                    None => None,
                }
            };
            let n = data.len();
            if n == 0 {
                return Ok(());
            }
            let delivered = match route {
                Some((Some(tx), credit)) => match credit.acquire_many(n as u32).await {
                    Ok(permit) => {
                        permit.forget();
                        tx.send(Ok(data)).is_ok()
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if !delivered {
                // Nobody reads it: the session window still gets it back.
                conn.consumed(stream, n);
            }
        }
        Frame::SynStream {
            stream,
            fin,
            unidirectional,
            headers,
            ..
        } => {
            let mut st = conn.lock();
            if stream <= st.last_peer_stream {
                return Err(goaway::PROTOCOL_ERROR);
            }
            st.last_peer_stream = stream;
            if stream % 2 == 0 {
                // Even ids are the server's to open.
                conn.reset(&mut st, stream, rst::PROTOCOL_ERROR);
                return Ok(());
            }
            if st.going_away || st.closed || st.streams.len() >= MAX_STREAMS {
                conn.control(Frame::RstStream {
                    stream,
                    status: rst::REFUSED_STREAM,
                });
                return Ok(());
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let credit = Arc::new(Semaphore::new(INITIAL_WINDOW as usize));
            let send_window = st.initial_window;
            st.streams.insert(
                stream,
                Entry {
                    send_window,
                    data: (!fin).then_some(tx),
                    credit: credit.clone(),
                    unacked: 0,
                    local_done: unidirectional,
                    remote_done: fin,
                },
            );
            drop(st);
            let s = Stream {
                headers,
                recv: RecvHalf {
                    id: stream,
                    conn: conn.clone(),
                    rx,
                    credit,
                },
                send: SendHalf {
                    id: stream,
                    conn: conn.clone(),
                    done: unidirectional,
                },
            };
            // Nobody accepting: the stream is dropped, and so reset.
            let _ = incoming.send(s);
        }
        Frame::SynReply { stream, .. } => {
            // This side opens no streams.
            let mut st = conn.lock();
            conn.reset(&mut st, stream, rst::PROTOCOL_ERROR);
        }
        Frame::RstStream { stream, .. } => {
            let mut st = conn.lock();
            if let Some(e) = st.streams.remove(&stream) {
                aborted(e);
            }
            drop(st);
            conn.changed.notify_waiters();
        }
        Frame::Settings { entries, .. } => {
            let mut st = conn.lock();
            for (_, id, value) in entries {
                if id != super::SETTINGS_INITIAL_WINDOW_SIZE || value as i64 > MAX_WINDOW {
                    continue;
                }
                let delta = value as i64 - st.initial_window;
                st.initial_window = value as i64;
                st.enforced = true;
                for e in st.streams.values_mut() {
                    e.send_window += delta;
                }
            }
            drop(st);
            conn.changed.notify_waiters();
        }
        Frame::Ping { id } => {
            // Odd ids are the client's own pings; even ones would answer ours (none sent).
            if id % 2 == 1 && !conn.control(Frame::Ping { id }) {
                return Err(goaway::PROTOCOL_ERROR);
            }
        }
        Frame::GoAway { .. } => conn.lock().going_away = true,
        Frame::Headers { stream, fin, .. } => {
            let mut st = conn.lock();
            let last = st.last_peer_stream;
            match st.streams.get_mut(&stream) {
                Some(e) if fin => {
                    e.data = None;
                    e.remote_done = true;
                    if e.local_done {
                        st.streams.remove(&stream);
                    }
                }
                Some(_) => {}
                None if stream > last => conn.reset(&mut st, stream, rst::INVALID_STREAM),
                None => {}
            }
        }
        Frame::WindowUpdate { stream, delta } => {
            let mut st = conn.lock();
            st.enforced = true;
            if stream == 0 {
                st.send_window += delta as i64;
                if st.send_window > MAX_WINDOW || delta == 0 {
                    return Err(goaway::PROTOCOL_ERROR);
                }
            } else if let Some(e) = st.streams.get_mut(&stream) {
                e.send_window += delta as i64;
                if e.send_window > MAX_WINDOW || delta == 0 {
                    conn.reset(&mut st, stream, rst::FLOW_CONTROL_ERROR);
                }
            }
            drop(st);
            conn.changed.notify_waiters();
        }
        Frame::Unknown { .. } => {}
    }
    Ok(())
}

async fn write_loop<W: AsyncWrite + Unpin>(
    conn: Arc<Conn>,
    mut w: W,
    mut control: mpsc::UnboundedReceiver<Frame>,
    mut data: mpsc::Receiver<Frame>,
    mut closed: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    let mut encoder = Encoder::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut ending = false;
    loop {
        let frame = if ending {
            control.try_recv().ok()
        } else {
            tokio::select! {
                biased;
                f = control.recv() => f,
                f = data.recv() => f,
                _ = closed.wait_for(|c| *c) => {
                    ending = true;
                    continue;
                }
            }
        };
        let Some(mut frame) = frame else { break };
        // Everything ready goes out in one write.
        loop {
            if !matches!(frame, Frame::Data { .. }) {
                conn.control_queued.fetch_sub(1, Ordering::Relaxed);
            }
            if let Err(e) = encoder.encode(&frame, &mut out) {
                tracing::warn!("spdy: encoding {frame:?}: {e}");
            }
            if out.len() >= 64 * 1024 {
                break;
            }
            frame = match control.try_recv() {
                Ok(f) => f,
                Err(_) if ending => break,
                Err(_) => match data.try_recv() {
                    Ok(f) => f,
                    Err(_) => break,
                },
            };
        }
        if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
            conn.close();
            return;
        }
        out.clear();
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::test_client::Client;
    use crate::spdy::SETTINGS_INITIAL_WINDOW_SIZE;
    use std::time::Duration;

    async fn opened(
        c: &mut Client,
        incoming: &mut mpsc::UnboundedReceiver<Stream>,
        id: u32,
    ) -> (RecvHalf, SendHalf) {
        c.open(id, &[("streamtype", "data")]).await;
        let s = incoming.recv().await.unwrap();
        assert_eq!(s.id(), id);
        assert_eq!(s.headers().get("streamtype"), Some("data"));
        let halves = s.reply();
        match c.next().await {
            Some(Frame::SynReply { stream, fin, .. }) => assert_eq!((stream, fin), (id, false)),
            other => panic!("{other:?}"),
        }
        halves
    }

    #[tokio::test]
    async fn stream_carries_data_both_ways_with_half_closes() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        let (mut recv, mut send) = opened(&mut c, &mut incoming, 1).await;
        c.data(1, b"hello ", false).await;
        c.data(1, b"server", true).await;
        let mut got = Vec::new();
        while let Some(b) = recv.recv().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"hello server");
        send.send(b"hello client").await.unwrap();
        send.finish().await.unwrap();
        assert_eq!(c.read_data(1, None).await, b"hello client");
        c.close().await;
        assert!(
            incoming.recv().await.is_none(),
            "the session ends with the connection"
        );
    }

    #[tokio::test]
    async fn pings_are_echoed() {
        let (mut c, io) = Client::new();
        let _incoming = serve(io);
        c.send(Frame::Ping { id: 7 }).await;
        // An even id would answer a ping of the server's: not echoed.
        c.send(Frame::Ping { id: 8 }).await;
        c.send(Frame::Ping { id: 9 }).await;
        assert_eq!(c.next().await, Some(Frame::Ping { id: 7 }));
        assert_eq!(c.next().await, Some(Frame::Ping { id: 9 }));
    }

    #[tokio::test]
    async fn a_peer_that_keeps_windows_gets_no_more_than_them() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        c.send(Frame::Settings {
            clear: false,
            entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 1000)],
        })
        .await;
        let (_recv, mut send) = opened(&mut c, &mut incoming, 1).await;
        let sender = tokio::spawn(async move {
            send.send(&[7u8; 5000]).await.unwrap();
            send.finish().await.unwrap();
        });
        assert_eq!(c.read_data(1, Some(1000)).await.len(), 1000);
        // Nothing more until the window grows.
        let quiet = tokio::time::timeout(Duration::from_millis(200), c.next()).await;
        assert!(quiet.is_err(), "sent past the window: {quiet:?}");
        c.send(Frame::WindowUpdate {
            stream: 1,
            delta: 10_000,
        })
        .await;
        assert_eq!(c.read_data(1, None).await.len(), 4000);
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn the_session_window_binds_too() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        // Streams may take 1 MiB, the session only its initial 64 KiB.
        c.send(Frame::Settings {
            clear: false,
            entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)],
        })
        .await;
        let (_recv, mut send) = opened(&mut c, &mut incoming, 1).await;
        tokio::spawn(async move { send.send(&vec![1u8; 100_000]).await });
        let first = c.read_data(1, Some(INITIAL_WINDOW as usize)).await;
        assert_eq!(first.len(), INITIAL_WINDOW as usize);
        let quiet = tokio::time::timeout(Duration::from_millis(200), c.next()).await;
        assert!(quiet.is_err(), "sent past the session window");
        c.send(Frame::WindowUpdate {
            stream: 0,
            delta: 1 << 20,
        })
        .await;
        let rest = c.read_data(1, Some(100_000 - first.len())).await;
        assert_eq!(rest.len(), 100_000 - first.len());
    }

    #[tokio::test]
    async fn a_peer_without_flow_control_gets_everything() {
        // moby/spdystream (kubectl) never sends WINDOW_UPDATE: 1 MiB must still arrive.
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        let (_recv, mut send) = opened(&mut c, &mut incoming, 1).await;
        let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = payload.clone();
        tokio::spawn(async move {
            send.send(&payload).await.unwrap();
            send.finish().await.unwrap();
        });
        assert_eq!(c.read_data(1, None).await, expected);
    }

    #[tokio::test]
    async fn what_is_read_is_granted_back() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        let (mut recv, _send) = opened(&mut c, &mut incoming, 1).await;
        let chunk = vec![3u8; 16 * 1024];
        for _ in 0..4 {
            c.data(1, &chunk, false).await;
        }
        let mut n = 0;
        while n < 64 * 1024 {
            n += recv.recv().await.unwrap().unwrap().len();
        }
        let (mut stream_credit, mut session_credit) = (0, 0);
        while stream_credit < 64 * 1024 || session_credit < 64 * 1024 {
            match c.next().await {
                Some(Frame::WindowUpdate { stream: 0, delta }) => session_credit += delta,
                Some(Frame::WindowUpdate { stream: 1, delta }) => stream_credit += delta,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((stream_credit, session_credit), (64 * 1024, 64 * 1024));
    }

    #[tokio::test]
    async fn a_slow_reader_loses_nothing() {
        // A peer that ignores windows sends far more than the window; the server reads late.
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        let (mut recv, _send) = opened(&mut c, &mut incoming, 1).await;
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(10_000) {
                c.data(1, piece, false).await;
            }
            c.data(1, b"", true).await;
            c
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        while let Some(b) = recv.recv().await.unwrap() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, payload);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_reset_ends_both_directions() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        let (mut recv, mut send) = opened(&mut c, &mut incoming, 1).await;
        c.send(Frame::RstStream {
            stream: 1,
            status: rst::CANCEL,
        })
        .await;
        assert_eq!(recv.recv().await, Err(StreamClosed));
        // The reset may take a moment to arrive.
        let mut failed = false;
        for _ in 0..100 {
            if send.send(b"x").await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed, "sending on a reset stream succeeds");
    }

    #[tokio::test]
    async fn streams_dropped_unanswered_are_reset() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        c.open(1, &[]).await;
        drop(incoming.recv().await.unwrap());
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream: 1,
                status: rst::CANCEL
            })
        );
    }

    #[tokio::test]
    async fn frames_for_streams_never_opened_are_refused() {
        let (mut c, io) = Client::new();
        let _incoming = serve(io);
        c.data(5, b"who?", false).await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream: 5,
                status: rst::INVALID_STREAM
            })
        );
        // Even ids are the server's.
        c.open(6, &[]).await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream: 6,
                status: rst::PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn stream_ids_going_back_end_the_session() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        c.open(5, &[]).await;
        let _s = incoming.recv().await.unwrap();
        c.open(3, &[]).await;
        assert_eq!(
            c.next_but_updates().await,
            Some(Frame::GoAway {
                last_stream: 5,
                status: goaway::PROTOCOL_ERROR
            })
        );
        assert_eq!(c.next().await, None);
    }

    #[tokio::test]
    async fn garbage_ends_the_session_with_goaway() {
        let (mut c, io) = Client::new();
        let mut incoming = serve(io);
        c.raw(&[0x80, 0x02, 0, 1, 0, 0, 0, 0]).await;
        assert_eq!(
            c.next().await,
            Some(Frame::GoAway {
                last_stream: 0,
                status: goaway::PROTOCOL_ERROR
            })
        );
        assert_eq!(c.next().await, None);
        assert!(incoming.recv().await.is_none());
    }
}
