//! The embedded DNS server of a network: containers and VMs find each other by name.
//!
//! One small process per network ([`serve`]) listens on UDP and TCP port 53 of the network's
//! gateway address. It answers from the network's records file and forwards everything else
//! to the host's resolvers, as docker's embedded DNS does:
//!
//! - `A` (and `ANY`) for a record's name or one of its aliases: its IPv4 address,
//!   authoritative, TTL [`TTL`]. Names are matched case-insensitively, with or without a
//!   trailing dot, bare (`web`) or under the network's name (`web.mynet`, where `mynet` is
//!   the file name of the network directory). A name or alias that several records share
//!   answers all their addresses.
//! - Any other type for such a name (`AAAA`, `MX`, ...): NOERROR with no answer, so that a
//!   resolver asking for `AAAA` and `A` does not wait on, or leak the name to, the upstream.
//! - A CNAME alias (an `ExternalName` Service's name): the `CNAME` record, then the
//!   target's records, ours or the upstreams' (one level of alias is followed here).
//! - `PTR` for a record's address (`2.0.120.10.in-addr.arpa`): the record's name under
//!   the network's (`web.mynet.`), as docker answers.
//! - Every other query, including unknown names that look like ours (`nope.mynet`), is
//!   forwarded to the upstream resolvers in order: UDP if the client asked over UDP (a
//!   truncated answer is relayed truncated, so the client retries over TCP), TCP if over
//!   TCP. The upstream's answer is relayed as it is (code, answer, authority and additional
//!   sections). No upstream answering in time gives SERVFAIL.
//!
//! Records file: `<network_dir>/dns.json`, written by the engine with [`write_records`],
//! [`add_record`] and [`remove_record`] (atomic rename, under a `flock` on
//! `<network_dir>/dns.lock` so that concurrent container starts do not lose updates):
//!
//! ```json
//! {"records": [{"name": "web", "aliases": ["w", "3f2a9c1b2d4e"], "ipv4": "10.120.0.2"}]}
//! ```
//!
//! The server stats the file on each query and re-reads it when its inode, size or mtime
//! changed: one `statx` per query, no restart, no inotify descriptor. A file that does not
//! parse is logged and the previous records stay in use.
//!
//! Upstreams come from the host's `/etc/resolv.conf` ([`upstreams_from_resolv_conf`]),
//! re-read when it changes. Loopback resolvers (systemd-resolved's `127.0.0.53`) are skipped
//! when there are others: when `/etc/resolv.conf` lists only loopback ones, the real
//! upstreams are taken from systemd-resolved's `/run/systemd/resolve/resolv.conf` if it has
//! any, else the loopback ones are used (this server runs in the host's network namespace,
//! so they are reachable from it).
//!
//! Queries come from the workloads and are hostile: hickory parses them (a malformed packet
//! gets FORMERR or nothing, never a panic), forwarded queries are rebuilt from the parsed
//! question (never relayed as raw bytes) with a fresh random id from a fresh socket, the
//! upstream's reply must match that id and question, and at most [`MAX_FORWARDS`] forwards
//! are in flight at once (more get SERVFAIL), so a flood cannot grow the process.
//!
//! Why forwarding is written here rather than with `hickory-resolver` (hickory-server's
//! `ForwardAuthority`): a forwarder must relay the upstream's answer unchanged (NXDOMAIN with
//! its SOA, truncation, the AD bit), and the resolver rebuilds answers from its cache and
//! turns negative answers into errors; it also brings a cache per process, and this process
//! runs once per network. The exchange is ~60 lines on tokio sockets.
//!
//! Limits: IPv4 records only (`AAAA` for our names is empty); upstreams with a zone index
//! (`fe80::1%eth0`) are skipped; a change of systemd-resolved's own file is noticed only with
//! a change of `/etc/resolv.conf`; no cache of forwarded answers. hickory-server logs every
//! request at `info` (target `hickory_server`): the process's log filter should raise it.
//!
//! Footprint, measured with a release build serving on loopback: one thread, 3.4 MB VmRSS of
//! which 0.24 MB anonymous when idle, 4.9 MB after 5,000 local and 2,300 forwarded queries;
//! a local answer takes ~80 µs.

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::fsutil::FsError;

/// The records file in a network directory.
pub const RECORDS_FILE: &str = "dns.json";
/// The lock file that serializes updates of [`RECORDS_FILE`].
pub const LOCK_FILE: &str = "dns.lock";
/// The host's resolver configuration, where upstreams come from.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstreams, used when [`HOST_RESOLV_CONF`] lists only
/// its loopback stub.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// TTL of the answers for our own names, in seconds: podman's aardvark-dns uses 60; short,
/// because a container that restarts may get another address, and free, since the server is
/// on the same host.
pub const TTL: u32 = 60;
/// Forwarded queries in flight at most; more are answered SERVFAIL at once.
pub const MAX_FORWARDS: usize = 128;

/// Wait for one upstream's answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait for all upstreams together: below the 5 s a glibc client waits for us.
const FORWARD_TIMEOUT: Duration = Duration::from_millis(4500);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP payload we ask an upstream for, and so receive.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// The most upstreams tried for one query (resolv.conf's MAXNS).
const MAX_UPSTREAMS: usize = 3;

/// Errors of the DNS server and of its records file.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The records file or its lock cannot be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A record's name or alias cannot be a DNS name.
    #[error("invalid DNS name {0:?}: use labels of [a-zA-Z0-9_-], 63 characters at most, joined by dots")]
    BadName(String),
    /// The listening socket cannot be bound.
    #[error("bind the DNS server to {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The async runtime or the signal handler cannot be set up.
    #[error("set up the DNS server's runtime")]
    Runtime(#[source] io::Error),
    /// The server stopped on an error.
    #[error("DNS server failed")]
    Server(#[source] hickory_proto::ProtoError),
    /// The server's thread panicked.
    #[error("DNS server thread panicked")]
    Panicked,
}

mod records;

pub use records::{
    add_record, read_records, remove_cname, remove_record, remove_record_at, set_cname,
    write_records, Cname, Record,
};
use records::{normalize, Zone};

// ---------------------------------------------------------------------------------------
// A file re-read when it changes
// ---------------------------------------------------------------------------------------

/// What identifies a version of a file without reading it. An atomic rename gives a new
/// inode; an edit in place changes the size or the mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

type Parser<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// The parsed content of a file, refreshed by [`Watched::get`] when the file changed.
struct Watched<T> {
    path: PathBuf,
    parse: Parser<T>,
    state: Mutex<(Option<Stamp>, Arc<T>)>,
}

impl<T: Default> Watched<T> {
    fn new(path: PathBuf, parse: Parser<T>) -> Self {
        Watched {
            path,
            parse,
            state: Mutex::new((None, Arc::new(T::default()))),
        }
    }

    /// The current content: one stat, and a read when the file changed. A missing file is
    /// empty; an unreadable or unparsable one keeps the previous content.
    fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta),
            Err(err) => {
                if err.kind() == io::ErrorKind::NotFound {
                    if state.0.is_some() {
                        *state = (None, Arc::new(T::default()));
                    }
                } else {
                    warn!(path = %self.path.display(), %err, "cannot stat");
                }
                return state.1.clone();
            }
        };
        if state.0 == Some(stamp) {
            return state.1.clone();
        }
        // Read through one descriptor and stamp what was read, not what was stat'ed: the
        // file may be replaced in between.
        let read = File::open(&self.path).and_then(|mut file| {
            let stamp = Stamp::of(&file.metadata()?);
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok((stamp, bytes))
        });
        match read {
            Ok((stamp, bytes)) => {
                match (self.parse)(&bytes) {
                    Ok(value) => {
                        debug!(path = %self.path.display(), "reloaded");
                        state.1 = Arc::new(value);
                    }
                    Err(err) => {
                        warn!(path = %self.path.display(), %err, "does not parse, keeping the previous content");
                    }
                }
                state.0 = Some(stamp);
            }
            Err(err) => warn!(path = %self.path.display(), %err, "cannot read"),
        }
        state.1.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------

/// The upstream resolvers listed in a `resolv.conf`, on port 53, in order: the non-loopback
/// ones, or the loopback ones (`127.0.0.0/8`, `::1`) if there are no others. Comments,
/// other options and addresses with a zone index (`fe80::1%eth0`) are skipped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let all: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            words.next()?.parse::<IpAddr>().ok()
        })
        .collect();
    let (loopback, others): (Vec<IpAddr>, Vec<IpAddr>) =
        all.into_iter().partition(IpAddr::is_loopback);
    let chosen = if others.is_empty() { loopback } else { others };
    chosen
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The host's upstream resolvers now, as the server would use them (see the module doc).
pub fn host_upstreams() -> Vec<SocketAddr> {
    match fs::read(HOST_RESOLV_CONF) {
        Ok(bytes) => resolv_conf_with_systemd(&bytes),
        Err(err) => {
            warn!(path = HOST_RESOLV_CONF, %err, "cannot read");
            Vec::new()
        }
    }
}

fn resolv_conf_with_systemd(bytes: &[u8]) -> Vec<SocketAddr> {
    let upstreams = upstreams_from_resolv_conf(&String::from_utf8_lossy(bytes));
    if !upstreams.is_empty() && upstreams.iter().all(|a| a.ip().is_loopback()) {
        if let Ok(text) = fs::read_to_string(SYSTEMD_RESOLV_CONF) {
            let real = upstreams_from_resolv_conf(&text);
            if real.iter().any(|a| !a.ip().is_loopback()) {
                return real;
            }
        }
    }
    upstreams
}

/// Where the server forwards the queries it does not answer itself.
#[derive(Debug, Clone)]
pub enum Upstreams {
    /// The host's resolvers, from [`HOST_RESOLV_CONF`], re-read when it changes.
    Host,
    /// These, in order (tests, or an explicit `--dns`).
    Fixed(Vec<SocketAddr>),
}

enum UpstreamSource {
    Host(Watched<Vec<SocketAddr>>),
    Fixed(Arc<Vec<SocketAddr>>),
}

impl UpstreamSource {
    fn new(upstreams: Upstreams) -> Self {
        match upstreams {
            Upstreams::Host => UpstreamSource::Host(Watched::new(
                PathBuf::from(HOST_RESOLV_CONF),
                Box::new(|bytes| Ok(resolv_conf_with_systemd(bytes))),
            )),
            Upstreams::Fixed(list) => UpstreamSource::Fixed(Arc::new(list)),
        }
    }

    fn get(&self) -> Arc<Vec<SocketAddr>> {
        match self {
            UpstreamSource::Host(watched) => watched.get(),
            UpstreamSource::Fixed(list) => list.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The request handler
// ---------------------------------------------------------------------------------------

struct Handler {
    records: Watched<Zone>,
    /// The network's name: `NAME.<domain>` is answered as `NAME`.
    domain: Option<String>,
    upstreams: UpstreamSource,
    forwards: Semaphore,
}

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("no upstream resolvers")]
    NoUpstreams,
    #[error("too many forwards in flight")]
    Busy,
    #[error("cannot encode the query: {0}")]
    Encode(hickory_proto::ProtoError),
    /// Every upstream failed or timed out; the last error.
    #[error("no upstream answered: {0}")]
    Failed(io::Error),
}

impl Handler {
    /// The canonical name `query`'s name is an alias of, if the records say so.
    fn cname_of(&self, query: &Query) -> Option<Name> {
        if query.query_class() != DNSClass::IN || query.query_type() == RecordType::PTR {
            return None;
        }
        let zone = self.records.get();
        let key = normalize(&query.name().to_ascii());
        let target = zone.cname(&key, self.domain.as_deref())?;
        Name::from_ascii(format!("{target}.")).ok()
    }

    /// Our answer to `query`, or `None` if it is to be forwarded.
    fn local_answer(&self, query: &Query) -> Option<Vec<hickory_proto::rr::Record>> {
        if query.query_class() != DNSClass::IN {
            return None;
        }
        let zone = self.records.get();
        let owner = query.name().clone();
        if query.query_type() == RecordType::PTR {
            let net = query.name().parse_arpa_name().ok()?;
            let ip = match net.addr() {
                IpAddr::V4(ip) if net.prefix_len() == 32 => ip,
                _ => return None,
            };
            let name = zone.by_addr.get(&ip)?;
            let target = match &self.domain {
                Some(domain) => Name::from_ascii(format!("{name}.{domain}.")),
                None => Name::from_ascii(format!("{name}.")),
            }
            .ok()?;
            return Some(vec![hickory_proto::rr::Record::from_rdata(
                owner,
                TTL,
                RData::PTR(PTR(target)),
            )]);
        }
        let key = normalize(&query.name().to_ascii());
        let addrs = zone.lookup(&key, self.domain.as_deref())?;
        let answers = match query.query_type() {
            RecordType::A | RecordType::ANY => addrs
                .iter()
                .map(|ip| {
                    hickory_proto::rr::Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip)))
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(answers)
    }

    /// Asks the upstreams, in order, until one gives an answer other than SERVFAIL/REFUSED.
    async fn forward(&self, request: &Request, query: &Query) -> Result<Message, ForwardError> {
        let _permit = self
            .forwards
            .try_acquire()
            .map_err(|_| ForwardError::Busy)?;
        let upstreams = self.upstreams.get();
        if upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let id: u16 = rand::random();
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(request.recursion_desired())
            .set_checking_disabled(request.checking_disabled())
            .add_query(query.clone());
        // Forward EDNS only if the client speaks it: then the upstream truncates to what the
        // client can take, and we relay the truncation.
        if let Some(edns) = request.edns() {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD))
                .set_dnssec_ok(edns.flags().dnssec_ok);
            message.set_edns(ours);
        }
        let bytes = message.to_vec().map_err(ForwardError::Encode)?;
        let tcp = request.protocol() == Protocol::Tcp;

        let attempts = async {
            let mut last = Err(io::Error::from(io::ErrorKind::TimedOut));
            for &upstream in upstreams.iter().take(MAX_UPSTREAMS) {
                let exchange = async {
                    if tcp {
                        tcp_exchange(upstream, &bytes, id, query).await
                    } else {
                        udp_exchange(upstream, &bytes, id, query).await
                    }
                };
                let result = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                match result {
                    Ok(reply)
                        if matches!(
                            reply.response_code(),
                            ResponseCode::ServFail | ResponseCode::Refused
                        ) =>
                    {
                        debug!(%upstream, code = %reply.response_code(), "upstream declined");
                        last = Ok(reply);
                    }
                    Ok(reply) => return Ok(reply),
                    Err(err) => {
                        debug!(%upstream, %err, "upstream failed");
                        if last.is_err() {
                            last = Err(err);
                        }
                    }
                }
            }
            last
        };
        tokio::time::timeout(FORWARD_TIMEOUT, attempts)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            .map_err(ForwardError::Failed)
    }
}

/// Whether `reply` answers our query `id` for `query`.
fn is_reply_to(reply: &Message, id: u16, query: &Query) -> bool {
    reply.id() == id
        && reply.message_type() == MessageType::Response
        && reply.queries().len() == 1
        && reply.queries()[0].query_type() == query.query_type()
        && reply.queries()[0].query_class() == query.query_class()
        && reply.queries()[0].name() == query.name()
}

fn unspecified_for(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// One query over UDP from a fresh socket (a random source port), connected so that only
/// the upstream's datagrams arrive; datagrams that are not the reply are ignored.
async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let socket = tokio::net::UdpSocket::bind(unspecified_for(upstream)).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0; usize::from(MAX_UDP_PAYLOAD)];
    loop {
        let n = socket.recv(&mut buf).await?;
        match Message::from_vec(&buf[..n]) {
            Ok(reply) if is_reply_to(&reply, id, query) => return Ok(reply),
            _ => debug!(%upstream, "ignoring a datagram that is not the reply"),
        }
    }
}

/// One query over TCP (RFC 1035 §4.2.2: a two-byte length before each message).
async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    match Message::from_vec(&buf) {
        Ok(reply) if is_reply_to(&reply, id, query) => Ok(reply),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "upstream's reply does not match the query",
        )),
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = || {
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(edns) = request.edns() {
                let mut ours = Edns::new();
                ours.set_max_payload(edns.max_payload().max(512))
                    .set_dnssec_ok(edns.flags().dnssec_ok);
                builder.edns(ours);
            }
            builder
        };
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);

        let query = if request.op_code() != OpCode::Query {
            Err(ResponseCode::NotImp)
        } else if request.edns().is_some_and(|e| e.version() > 0) {
            Err(ResponseCode::BADVERS)
        } else {
            // Exactly one question, or FORMERR.
            request
                .request_info()
                .map(|info| info.query.original().clone())
                .map_err(|_| ResponseCode::FormErr)
        };
        let query = match query {
            Ok(query) => query,
            Err(code) => {
                header.set_response_code(code);
                return send(
                    &mut response_handle,
                    builder().build_no_records(header),
                    header,
                )
                .await;
            }
        };

        if let Some(target) = self.cname_of(&query) {
            // The alias, then the target's records: ours, or what the upstreams say (as
            // CoreDNS answers for an ExternalName Service). One level: a target that is an
            // alias again is the upstreams' to follow.
            let alias = RData::CNAME(CNAME(target.clone()));
            let mut answers = vec![hickory_proto::rr::Record::from_rdata(
                query.name().clone(),
                TTL,
                alias,
            )];
            let mut of_target = query.clone();
            of_target.set_name(target);
            if let Some(ours) = self.local_answer(&of_target) {
                header.set_authoritative(true);
                answers.extend(ours);
            } else {
                match self.forward(request, &of_target).await {
                    Ok(reply) => {
                        header.set_response_code(reply.response_code());
                        answers.extend(reply.answers().iter().cloned());
                    }
                    Err(err) => {
                        debug!(%of_target, %err, "forward of a CNAME's target failed");
                        header.set_response_code(ResponseCode::ServFail);
                    }
                }
            }
            let response = builder().build(header, answers.iter(), [], [], []);
            return send(&mut response_handle, response, header).await;
        }

        if let Some(answers) = self.local_answer(&query) {
            header.set_authoritative(true);
            let response = builder().build(header, answers.iter(), [], [], []);
            return send(&mut response_handle, response, header).await;
        }

        match self.forward(request, &query).await {
            Ok(reply) => {
                header
                    .set_response_code(reply.response_code())
                    .set_authoritative(reply.authoritative())
                    .set_truncated(reply.truncated())
                    .set_recursion_available(reply.recursion_available())
                    .set_authentic_data(reply.authentic_data());
                let response = builder().build(
                    header,
                    reply.answers(),
                    reply.name_servers(),
                    [],
                    reply.additionals(),
                );
                send(&mut response_handle, response, header).await
            }
            Err(err) => {
                debug!(%query, %err, "forward failed");
                header.set_response_code(ResponseCode::ServFail);
                send(
                    &mut response_handle,
                    builder().build_no_records(header),
                    header,
                )
                .await
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(err) => {
            debug!(%err, "cannot send the response");
            header.into()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// A DNS server bound to its address, not yet serving.
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    handler: Handler,
}

impl DnsServer {
    /// Binds UDP and TCP on `listen` for the network in `network_dir`. Port 0 picks a free
    /// port, the same for both (tests).
    pub fn bind(
        network_dir: &Path,
        listen: SocketAddr,
        upstreams: Upstreams,
    ) -> Result<Self, DnsError> {
        let (udp, tcp) = bind_pair(listen)?;
        let domain = network_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(normalize)
            .filter(|d| !d.is_empty());
        let records = Watched::new(
            network_dir.join(RECORDS_FILE),
            Box::new(|bytes| Zone::parse(bytes).map_err(|e| e.to_string())),
        );
        Ok(DnsServer {
            udp,
            tcp,
            handler: Handler {
                records,
                domain,
                upstreams: UpstreamSource::new(upstreams),
                forwards: Semaphore::new(MAX_FORWARDS),
            },
        })
    }

    /// The address it listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// Serves until `shutdown` completes. Must run inside a tokio runtime with I/O and time
    /// enabled.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
        let addr = self.local_addr();
        let mut server = ServerFuture::new(self.handler);
        server
            .register_socket_std(self.udp)
            .map_err(|err| DnsError::Bind { addr, err })?;
        server
            .register_listener_std(self.tcp, TCP_IDLE_TIMEOUT)
            .map_err(|err| DnsError::Bind { addr, err })?;
        info!(%addr, "DNS server listening");
        tokio::select! {
            result = server.block_until_done() => {
                // The sockets closed by themselves.
                return result.map_err(DnsError::Server);
            }
            () = shutdown => {}
        }
        info!(%addr, "DNS server stopping");
        server.shutdown_gracefully().await.map_err(DnsError::Server)
    }

    /// Serves on a thread of its own (with a current-thread runtime) until the returned
    /// handle is stopped or dropped.
    pub fn spawn(self) -> Result<RunningServer, DnsError> {
        let addr = self.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = runtime()?;
        let thread = std::thread::Builder::new()
            .name(format!("dns-{addr}"))
            .spawn(move || {
                runtime.block_on(self.run_until(async {
                    let _ = stopped.await;
                }))
            })
            .map_err(DnsError::Runtime)?;
        Ok(RunningServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Binds UDP then TCP on the same port; with port 0, retries when the port UDP got is
/// taken for TCP.
fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(listen).map_err(|err| DnsError::Bind { addr: listen, err })?;
        let addr = udp
            .local_addr()
            .map_err(|err| DnsError::Bind { addr: listen, err })?;
        match TcpListener::bind(addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) if listen.port() == 0 && tries < 16 => {
                debug!(%addr, %err, "TCP port taken, trying another");
                tries += 1;
            }
            Err(err) => return Err(DnsError::Bind { addr, err }),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DnsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DnsError::Runtime)
}

/// A server serving on its own thread ([`DnsServer::spawn`]); stopped when dropped.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), DnsError>>>,
}

impl RunningServer {
    /// The address it listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread; what the server ended with.
    pub fn stop(mut self) -> Result<(), DnsError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), DnsError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| DnsError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Err(err) = self.stop_and_join() {
            warn!(addr = %self.addr, %err, "DNS server ended with an error");
        }
    }
}

/// Serves the network in `network_dir` on `listen:port` (UDP and TCP), forwarding to the
/// host's resolvers, until SIGTERM or SIGINT. The entry point of the per-network DNS process.
/// `ready` runs once the sockets are bound (the engine waits for it before it lets a
/// container query the server).
pub fn serve(
    network_dir: &Path,
    listen: Ipv4Addr,
    port: u16,
    ready: impl FnOnce(),
) -> Result<(), DnsError> {
    let server = DnsServer::bind(network_dir, (listen, port).into(), Upstreams::Host)?;
    // DHCP on the network's bridge, beside DNS; a network whose port 67 is taken (another
    // DHCP server bound to every device) goes without, and says so in its log.
    let dhcp = crate::fsutil::read_json::<crate::store::Network>(&network_dir.join("network.json"))
        .ok()
        .flatten()
        .and_then(|n| match crate::dhcp::socket(&n.bridge) {
            Ok(s) => Some((s, n.mtu)),
            Err(e) => {
                tracing::warn!(bridge = %n.bridge, "no DHCP on this network: {e}");
                None
            }
        });
    crate::attach::record_dns_server(network_dir)?;
    ready();
    runtime()?.block_on(async {
        if let Some((sock, mtu)) = dhcp {
            match tokio::net::UdpSocket::from_std(sock) {
                Ok(sock) => {
                    tokio::spawn(crate::dhcp::serve(
                        sock,
                        network_dir.to_path_buf(),
                        listen,
                        mtu,
                    ));
                }
                Err(e) => tracing::warn!("no DHCP on this network: {e}"),
            }
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(DnsError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DnsError::Runtime)?;
        server
            .run_until(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
            .await
    })
}

#[cfg(test)]
mod tests;
