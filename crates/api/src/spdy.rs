//! SPDY/3.1 framing, what `kubectl port-forward` speaks (client-go's `httpstream/spdy` on
//! moby/spdystream), either over a plain HTTP/1.1 `Upgrade: SPDY/3.1` or tunneled in a
//! websocket. The frames are the ones of the SPDY Protocol Draft 3.1 (§2.2 control frames,
//! §2.6 their types): DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY,
//! HEADERS and WINDOW_UPDATE (§2.6.8, stream 0 for the session window new in 3.1).
//!
//! [`Decoder`] turns bytes into [`Frame`]s without doing any I/O (so the fuzzer drives it
//! directly), [`Encoder`] frames into bytes; [`session`] runs a connection on top. Header
//! blocks (§2.6.10) are one zlib stream per direction for the whole connection, primed with
//! the spec's dictionary: the decoder sets it when the stream asks for it (Z_NEED_DICT), the
//! encoder uses it from the start and sync-flushes each block.
//!
//! Every frame is hostile until parsed: control frames are at most [`MAX_CONTROL_LEN`]
//! bytes, a header block inflates to at most [`MAX_HEADER_BLOCK`], DATA is handed on in
//! pieces of at most [`MAX_DATA_CHUNK`] whatever the frame's length, and a malformed frame is
//! a [`FrameError`]: for one stream (answered with RST_STREAM) or for the session (GOAWAY).
//! Limits: no server push, priorities and CREDENTIAL frames are ignored.

pub mod session;
#[cfg(test)]
pub(crate) mod test_client;

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version on the wire (3.1 is version 3 with session flow control).
pub const VERSION: u16 = 3;
/// Largest control frame accepted (its payload); kubectl's are a few dozen bytes.
pub const MAX_CONTROL_LEN: usize = 64 * 1024;
/// Largest header block accepted, once inflated.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// DATA is handed on in pieces of at most this many bytes.
pub const MAX_DATA_CHUNK: usize = 16 * 1024;
/// Largest DATA frame the length field can say (24 bits).
pub const MAX_FRAME_LEN: usize = 0xff_ffff;

/// Flag of DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Flag of SYN_STREAM: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Flag of SETTINGS: forget persisted settings.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// RST_STREAM status codes (§2.6.3).
pub mod rst {
    /// A frame broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame for a stream that is not open.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// Something failed on this side.
    pub const INTERNAL_ERROR: u32 = 6;
    /// The peer broke flow control.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// A SYN_STREAM for a stream already open.
    pub const STREAM_IN_USE: u32 = 8;
    /// Data after the peer's FIN.
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    /// A frame this side cannot handle.
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes (§2.6.6).
pub mod goaway {
    /// A normal end of the session.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// Something failed on this side.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// The SETTINGS id of the initial stream window (§2.6.4).
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// The header compression dictionary of SPDY/3 (§2.6.10.1): these words, each after its
/// length as four big-endian bytes, then [`DICTIONARY_TAIL`] as it is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "10010120120220520630030230330430530630740240540640740840941041141241341441541641",
    "7502504505203 Non-Authoritative Information204 No Content301 Moved Permanently40",
    "0 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O",
    "ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag",
    "e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/",
    "javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1",
    ",utf-,*,enq=0.",
);
/// The dictionary's Adler-32, the id a zlib stream primed with it names.
const DICTIONARY_ADLER: u32 = 0xe3c6_a7c2;

/// The SPDY/3 header dictionary (1,423 bytes).
pub fn dictionary() -> &'static [u8] {
    static DICT: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    });
    &DICT
}

/// A header block: names (lower case, unique) and values (several joined by NUL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The value of `name` (its first, when there are several).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// One frame, or one piece of a DATA frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream data; a long DATA frame arrives as several, `fin` on the last.
    Data {
        /// The stream.
        stream: u32,
        /// The bytes.
        data: Bytes,
        /// The sender's last data on the stream.
        fin: bool,
    },
    /// A stream opened by the sender.
    SynStream {
        /// The new stream's id.
        stream: u32,
        /// The stream it is pushed for (0 for none).
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// The sender will send nothing more.
        fin: bool,
        /// The receiver may not send.
        unidirectional: bool,
        /// Its headers.
        headers: Headers,
    },
    /// The answer to a SYN_STREAM.
    SynReply {
        /// The stream.
        stream: u32,
        /// The sender will send nothing more.
        fin: bool,
        /// Its headers.
        headers: Headers,
    },
    /// A stream ended abnormally.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why ([`rst`]).
        status: u32,
    },
    /// Settings: (flags, id, value) each.
    Settings {
        /// Forget persisted settings.
        clear: bool,
        /// The entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// A ping, answered with the same id.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The session ends: no stream above `last_stream` was handled.
    GoAway {
        /// The last stream the sender handled.
        last_stream: u32,
        /// Why ([`goaway`]).
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// The sender will send nothing more.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// More window for a stream, or (stream 0) the session.
    WindowUpdate {
        /// The stream, 0 for the session.
        stream: u32,
        /// How many more bytes may be sent (1 to 2^31-1).
        delta: u32,
    },
    /// A control frame of a type this side does not know: ignored (§2.2.1).
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// A frame that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The framing or the header compression is broken: the session must end (GOAWAY).
    #[error("session error: {0}")]
    Session(&'static str),
    /// One stream's frame is wrong: that stream ends (RST_STREAM with `status`).
    #[error("stream {stream}: {reason}")]
    Stream {
        /// The stream.
        stream: u32,
        /// The RST_STREAM status to answer with.
        status: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// A frame failed to encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than a frame's length field can say.
    #[error("frame too long: {0} bytes")]
    TooLong(usize),
    /// zlib failed.
    #[error("compressing a header block")]
    Compress,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Bytes to frames, one connection's direction (it owns the inflating zlib stream).
pub struct Decoder {
    inflate: Decompress,
    /// The DATA frame being read: its stream, the bytes left and its FIN flag.
    data: Option<(u32, usize, bool)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new() -> Self {
        Decoder {
            inflate: Decompress::new(true),
            data: None,
        }
    }

    /// The next frame at the front of `buf` (consumed from it), `None` until more bytes
    /// arrive. After a [`FrameError::Session`] the decoder is not to be used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some((stream, left, fin)) = self.data {
            if buf.is_empty() {
                return Ok(None);
            }
            let n = left.min(buf.len()).min(MAX_DATA_CHUNK);
            let data = buf.split_to(n).freeze();
            let left = left - n;
            self.data = (left > 0).then_some((stream, left, fin));
            return Ok(Some(Frame::Data {
                stream,
                data,
                fin: fin && left == 0,
            }));
        }
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (u32_at(buf, 4) & 0xff_ffff) as usize;
        if buf[0] & 0x80 == 0 {
            let stream = u32_at(buf, 0) & 0x7fff_ffff;
            if stream == 0 {
                return Err(FrameError::Session("DATA on stream 0"));
            }
            buf.advance(8);
            let fin = flags & FLAG_FIN != 0;
            if len == 0 {
                return Ok(Some(Frame::Data {
                    stream,
                    data: Bytes::new(),
                    fin,
                }));
            }
            self.data = Some((stream, len, fin));
            return self.decode(buf);
        }
        let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        if version != VERSION {
            return Err(FrameError::Session("unsupported SPDY version"));
        }
        if len > MAX_CONTROL_LEN {
            return Err(FrameError::Session("control frame too large"));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(8 + len);
        self.control(kind, flags, &frame[8..]).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
        let fin = flags & FLAG_FIN != 0;
        let bad = |what| Err(FrameError::Session(what));
        let stream_of = |p: &[u8]| {
            let s = u32_at(p, 0) & 0x7fff_ffff;
            if s == 0 {
                Err(FrameError::Session("stream 0 in a stream's frame"))
            } else {
                Ok(s)
            }
        };
        match kind {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return bad("SYN_STREAM too short");
                }
                let stream = stream_of(p)?;
                let headers = self.header_block(stream, &p[10..])?;
                Ok(Frame::SynStream {
                    stream,
                    associated: u32_at(p, 4) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                })
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                if p.len() < 4 {
                    return bad("SYN_REPLY or HEADERS too short");
                }
                let stream = stream_of(p)?;
                let headers = self.header_block(stream, &p[4..])?;
                Ok(if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        fin,
                        headers,
                    }
                })
            }
            TYPE_RST_STREAM => {
                if p.len() != 8 {
                    return bad("RST_STREAM of a wrong length");
                }
                Ok(Frame::RstStream {
                    stream: stream_of(p)?,
                    status: u32_at(p, 4),
                })
            }
            TYPE_SETTINGS => {
                if p.len() < 4 || (p.len() - 4) / 8 != u32_at(p, 0) as usize || p.len() % 8 != 4 {
                    return bad("SETTINGS of a wrong length");
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| (e[0], u32_at(e, 0) & 0xff_ffff, u32_at(e, 4)))
                    .collect();
                Ok(Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                })
            }
            TYPE_PING => {
                if p.len() != 4 {
                    return bad("PING of a wrong length");
                }
                Ok(Frame::Ping { id: u32_at(p, 0) })
            }
            TYPE_GOAWAY => {
                if p.len() != 8 {
                    return bad("GOAWAY of a wrong length");
                }
                Ok(Frame::GoAway {
                    last_stream: u32_at(p, 0) & 0x7fff_ffff,
                    status: u32_at(p, 4),
                })
            }
            TYPE_WINDOW_UPDATE => {
                if p.len() != 8 {
                    return bad("WINDOW_UPDATE of a wrong length");
                }
                Ok(Frame::WindowUpdate {
                    stream: u32_at(p, 0) & 0x7fff_ffff,
                    delta: u32_at(p, 4) & 0x7fff_ffff,
                })
            }
            kind => Ok(Frame::Unknown { kind }),
        }
    }

    /// Inflates and parses a header block. Broken compression ends the session (the two
    /// sides' zlib streams are out of step); a block that inflates but is wrong ends only
    /// its stream.
    fn header_block(&mut self, stream: u32, block: &[u8]) -> Result<Headers, FrameError> {
        let raw = self.inflate(block)?;
        parse_headers(&raw).map_err(|reason| FrameError::Stream {
            stream,
            status: rst::PROTOCOL_ERROR,
            reason,
        })
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(FrameError::Session("header block too large"));
                }
                out.reserve((out.len()).clamp(256, MAX_HEADER_BLOCK - out.len()));
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - in_before) as usize;
            input = &input[used.min(input.len())..];
            match r {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::Session("header compression stream ended"))
                }
                Ok(_) => {
                    let progress = used > 0 || out.len() > out_before;
                    if input.is_empty() && out.len() < out.capacity() {
                        return Ok(out);
                    }
                    if !progress && out.len() < out.capacity() {
                        return Err(FrameError::Session("header block does not inflate"));
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER) => {
                        self.inflate
                            .set_dictionary(dictionary())
                            .map_err(|_| FrameError::Session("setting the header dictionary"))?;
                    }
                    _ => return Err(FrameError::Session("bad header compression")),
                },
            }
        }
    }
}

/// Parses an inflated header block (§2.6.10): a count, then per pair a length-prefixed name
/// (lower case, unique, not empty) and value.
fn parse_headers(mut b: &[u8]) -> Result<Headers, &'static str> {
    fn take<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
        if b.len() < 4 {
            return Err("header block truncated");
        }
        let n = u32_at(b, 0) as usize;
        if b.len() - 4 < n {
            return Err("header block truncated");
        }
        let s = &b[4..4 + n];
        *b = &b[4 + n..];
        Ok(s)
    }
    if b.len() < 4 {
        return Err("header block truncated");
    }
    let count = u32_at(b, 0) as usize;
    b = &b[4..];
    // Each pair takes at least 8 bytes: a count larger than that is a lie.
    if count > b.len() / 8 {
        return Err("header count larger than the block");
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take(&mut b)?;
        let value = take(&mut b)?;
        let name = std::str::from_utf8(name).map_err(|_| "header name not UTF-8")?;
        let value = std::str::from_utf8(value).map_err(|_| "header value not UTF-8")?;
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase() || c == 0) {
            return Err("header name empty or not lower case");
        }
        if pairs.iter().any(|(n, _)| n == name) {
            return Err("header name repeated");
        }
        pairs.push((name.to_string(), value.to_string()));
    }
    if !b.is_empty() {
        return Err("bytes after the header block");
    }
    Ok(Headers(pairs))
}

/// Frames to bytes, one connection's direction (it owns the deflating zlib stream, so
/// frames with headers must be encoded in the order they are sent).
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder for a new connection.
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh stream takes a dictionary; this cannot fail.
        let _ = deflate.set_dictionary(dictionary());
        Encoder { deflate }
    }

    /// Appends `frame` to `out`. A [`Frame::Data`] is one whole DATA frame.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), EncodeError> {
        let control = |out: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]| {
            if payload.len() > MAX_FRAME_LEN {
                return Err(EncodeError::TooLong(payload.len()));
            }
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            out.put_u32(((flags as u32) << 24) | payload.len() as u32);
            out.put_slice(payload);
            Ok(())
        };
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { stream, data, fin } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(EncodeError::TooLong(data.len()));
                }
                out.put_u32(stream & 0x7fff_ffff);
                out.put_u32(((if *fin { FLAG_FIN } else { 0 } as u32) << 24) | data.len() as u32);
                out.put_slice(data);
                Ok(())
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                fin: f,
                unidirectional,
                headers,
            } => {
                let mut p = Vec::new();
                p.put_u32(*stream);
                p.put_u32(*associated);
                p.put_u8(priority << 5);
                p.put_u8(0);
                self.header_block(headers, &mut p)?;
                let flags = fin(*f)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(out, TYPE_SYN_STREAM, flags, &p)
            }
            Frame::SynReply {
                stream,
                fin: f,
                headers,
            }
            | Frame::Headers {
                stream,
                fin: f,
                headers,
            } => {
                let mut p = Vec::new();
                p.put_u32(*stream);
                self.header_block(headers, &mut p)?;
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                control(out, kind, fin(*f), &p)
            }
            Frame::RstStream { stream, status } => {
                let p = [stream.to_be_bytes(), status.to_be_bytes()].concat();
                control(out, TYPE_RST_STREAM, 0, &p)
            }
            Frame::Settings { clear, entries } => {
                let mut p = Vec::with_capacity(4 + 8 * entries.len());
                p.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    p.put_u32(((*flags as u32) << 24) | (id & 0xff_ffff));
                    p.put_u32(*value);
                }
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control(out, TYPE_SETTINGS, flags, &p)
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_stream,
                status,
            } => {
                let p = [last_stream.to_be_bytes(), status.to_be_bytes()].concat();
                control(out, TYPE_GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream, delta } => {
                let p = [stream.to_be_bytes(), delta.to_be_bytes()].concat();
                control(out, TYPE_WINDOW_UPDATE, 0, &p)
            }
            Frame::Unknown { kind } => control(out, *kind, 0, &[]),
        }
    }

    /// Appends `headers` as a compressed, sync-flushed header block.
    fn header_block(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut raw = Vec::new();
        raw.put_u32(headers.0.len() as u32);
        for (name, value) in &headers.0 {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut input = &raw[..];
        loop {
            out.reserve(input.len() + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|_| EncodeError::Compress)?;
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            frames.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(frames)
    }

    #[test]
    fn dictionary_is_the_specs() {
        assert_eq!(dictionary().len(), 1423);
        let mut d = Decompress::new(true);
        // The Adler-32 a zlib stream primed with it names.
        let adler = {
            let mut c = Compress::new(Compression::default(), true);
            c.set_dictionary(dictionary()).unwrap()
        };
        assert_eq!(adler, DICTIONARY_ADLER);
        let _ = d.set_dictionary(dictionary());
    }

    /// Two SYN_STREAMs as zlib (C zlib, through Python) compresses them with the dictionary and
    /// a sync flush per block, one stream across both: what kubectl's Go framer sends.
    #[test]
    fn reads_header_blocks_of_another_zlib() {
        let wire = hex(concat!(
            "800300010000003c0000000100000000000078f9e3c6a7c202253a48f95b044aab4c16064092b3",
            "08125b99a054cc68004e872545a989b9d0a2863515141100000000ffff8003000100000016000000",
            "03000000000000224b2ba8944a04000000ffff"
        ));
        let frames = decode_all(&mut Decoder::new(), &wire).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    stream: 1,
                    associated: 0,
                    priority: 0,
                    fin: false,
                    unidirectional: false,
                    headers: headers(&[
                        ("port", "80"),
                        ("requestid", "0"),
                        ("streamtype", "error")
                    ]),
                },
                Frame::SynStream {
                    stream: 3,
                    associated: 0,
                    priority: 0,
                    fin: false,
                    unidirectional: false,
                    headers: headers(&[("port", "80"), ("requestid", "0"), ("streamtype", "data")]),
                },
            ]
        );
        // Byte by byte, the same.
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut n = 0;
        for b in wire {
            buf.put_u8(b);
            while d.decode(&mut buf).unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream: 5,
                associated: 0,
                priority: 3,
                fin: true,
                unidirectional: true,
                headers: headers(&[("streamtype", "data"), ("multi", "a\0b")]),
            },
            Frame::SynReply {
                stream: 5,
                fin: false,
                headers: Headers::default(),
            },
            Frame::Headers {
                stream: 5,
                fin: true,
                headers: headers(&[("x", "")]),
            },
            Frame::RstStream {
                stream: 7,
                status: rst::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![(1, SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (0, 4, 100)],
            },
            Frame::Ping { id: 0xffff_ffff },
            Frame::GoAway {
                last_stream: 9,
                status: goaway::PROTOCOL_ERROR,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 12345,
            },
            Frame::Data {
                stream: 5,
                data: Bytes::from_static(b"hello"),
                fin: true,
            },
            Frame::Data {
                stream: 7,
                data: Bytes::new(),
                fin: false,
            },
            Frame::Unknown { kind: 10 },
        ];
        let mut e = Encoder::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            e.encode(f, &mut wire).unwrap();
        }
        assert_eq!(decode_all(&mut Decoder::new(), &wire).unwrap(), frames);
        assert_eq!(
            Headers(vec![("multi".into(), "a\0b".into())]).get("multi"),
            Some("a")
        );
    }

    #[test]
    fn long_data_comes_in_pieces() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        Encoder::new()
            .encode(
                &Frame::Data {
                    stream: 3,
                    data: Bytes::from(data.clone()),
                    fin: true,
                },
                &mut wire,
            )
            .unwrap();
        let frames = decode_all(&mut Decoder::new(), &wire).unwrap();
        assert!(frames.len() >= 100_000 / MAX_DATA_CHUNK);
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let Frame::Data { stream, data, fin } = f else {
                panic!("{f:?}")
            };
            assert_eq!(*stream, 3);
            assert!(data.len() <= MAX_DATA_CHUNK);
            assert_eq!(*fin, i == frames.len() - 1);
            got.extend_from_slice(data);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        let session = |b: &[u8]| match decode_all(&mut Decoder::new(), b) {
            Err(FrameError::Session(_)) => {}
            other => panic!("{b:02x?}: {other:?}"),
        };
        // Version 2.
        session(&hex("800200060000000400000001"));
        // A control frame longer than the limit.
        session(&hex("8003000100ffffff"));
        // DATA on stream 0.
        session(&hex("0000000000000001ff"));
        // RST_STREAM, PING and WINDOW_UPDATE of wrong lengths.
        session(&hex("800300030000000400000001"));
        session(&hex("80030006000000050000000100"));
        session(&hex("80030009000000040000000001"));
        // SETTINGS whose count lies.
        session(&hex("80030004000000040000ffff"));
        // A header block that is not zlib.
        session(&hex("800300010000000e0000000100000000000000112233"));
        // SYN_REPLY for stream 0.
        session(&hex("800300020000000400000000"));
        // A zlib bomb: a valid stream inflating past the limit.
        let mut p = Vec::new();
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(dictionary()).unwrap();
        let zeros = vec![0u8; MAX_HEADER_BLOCK * 4];
        p.reserve(MAX_CONTROL_LEN);
        c.compress_vec(&zeros, &mut p, FlushCompress::Sync).unwrap();
        let mut frame = BytesMut::new();
        frame.put_u16(0x8003);
        frame.put_u16(TYPE_SYN_REPLY);
        frame.put_u32(4 + p.len() as u32);
        frame.put_u32(1);
        frame.put_slice(&p);
        session(&frame);
    }

    /// Random frames (valid headers, random bodies, some header blocks behind a valid zlib
    /// header with the dictionary's id): errors, never panics.
    #[test]
    fn random_frames_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut d = Decoder::new();
            let mut buf = BytesMut::new();
            for _ in 0..(next() % 4 + 1) {
                let kind = (next() % 11) as u16;
                let mut body: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
                if matches!(kind, TYPE_SYN_STREAM | TYPE_SYN_REPLY | TYPE_HEADERS)
                    && next() % 2 == 0
                {
                    let at = if kind == TYPE_SYN_STREAM { 10 } else { 4 };
                    body.resize(body.len().max(at), 0);
                    body.splice(at..at, [0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
                }
                if next() % 8 == 0 {
                    buf.put_u32(next() as u32 & 0x7fff_ffff);
                } else {
                    buf.put_u16(0x8003);
                    buf.put_u16(kind);
                }
                buf.put_u32(((next() as u32 & 0xff) << 24) | body.len() as u32);
                buf.put_slice(&body);
            }
            while let Ok(Some(_)) | Err(FrameError::Stream { .. }) = d.decode(&mut buf) {}
        }
    }

    #[test]
    fn bad_header_blocks_end_only_their_stream() {
        let cases: &[&[u8]] = &[
            // A count of 2 but one pair.
            &[0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0],
            // An upper-case name.
            &[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0],
            // A repeated name.
            &[
                0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
            ],
            // A name longer than the block.
            &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            // Trailing bytes.
            &[0, 0, 0, 0, 1],
        ];
        for raw in cases {
            // Build the frame by hand: stream 3, the raw block compressed with the dictionary.
            let mut block = Vec::with_capacity(256);
            let mut c = Compress::new(Compression::default(), true);
            c.set_dictionary(dictionary()).unwrap();
            c.compress_vec(raw, &mut block, FlushCompress::Sync)
                .unwrap();
            let mut frame = BytesMut::new();
            frame.put_u16(0x8003);
            frame.put_u16(TYPE_HEADERS);
            frame.put_u32(4 + block.len() as u32);
            frame.put_u32(3);
            frame.put_slice(&block);
            let mut d = Decoder::new();
            match d.decode(&mut frame) {
                Err(FrameError::Stream {
                    stream: 3, status, ..
                }) => {
                    assert_eq!(status, rst::PROTOCOL_ERROR)
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }
}
