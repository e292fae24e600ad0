//! Tests of the DNS server: real sockets on loopback, a real records file, a fake upstream.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, RecordType};

use super::*;

// --- resolv.conf -----------------------------------------------------------------------

#[test]
fn resolv_conf_lists_nameservers_in_order() {
    let text =
        "# generated\nsearch example.com\nnameserver 192.0.2.1\n  nameserver\t2001:db8::1 # v6\n\
                ;nameserver 192.0.2.9\noptions ndots:2\nnameserver 198.51.100.7\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec![
            "192.0.2.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
            "198.51.100.7:53".parse().unwrap(),
        ]
    );
}

#[test]
fn resolv_conf_skips_loopback_when_there_are_others() {
    let text = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec!["10.0.0.2:53".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn resolv_conf_keeps_loopback_when_alone() {
    let text = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
    assert_eq!(
        upstreams_from_resolv_conf(text),
        vec!["127.0.0.53:53".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn resolv_conf_skips_garbage_and_zones() {
    let text =
        "nameserver\nnameserver fe80::1%eth0\nnameserver not-an-ip\nnameservers 1.1.1.1\n\0\u{7f}";
    assert!(upstreams_from_resolv_conf(text).is_empty());
}

// --- records file ----------------------------------------------------------------------

fn record(name: &str, aliases: &[&str], ip: [u8; 4]) -> Record {
    Record {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ipv4: ip.into(),
    }
}

/// A network directory named `testnet`, so that `NAME.testnet` is ours.
fn network_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("testnet");
    fs::create_dir(&dir).unwrap();
    (tmp, dir)
}

#[test]
fn records_file_round_trips_and_has_the_documented_format() {
    let (_tmp, dir) = network_dir();
    assert!(read_records(&dir).unwrap().is_empty());
    let records = vec![
        record("web", &["w"], [10, 120, 0, 2]),
        record("db", &[], [10, 120, 0, 3]),
    ];
    write_records(&dir, &records).unwrap();
    assert_eq!(read_records(&dir).unwrap(), records);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(RECORDS_FILE)).unwrap()).unwrap();
    assert_eq!(json["records"][0]["name"], "web");
    assert_eq!(json["records"][0]["aliases"][0], "w");
    assert_eq!(json["records"][0]["ipv4"], "10.120.0.2");
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn add_record_replaces_same_name_and_remove_reports_presence() {
    let (_tmp, dir) = network_dir();
    add_record(&dir, record("web", &[], [10, 0, 0, 2])).unwrap();
    add_record(&dir, record("db", &[], [10, 0, 0, 3])).unwrap();
    add_record(&dir, record("WEB", &["w"], [10, 0, 0, 4])).unwrap();
    let records = read_records(&dir).unwrap();
    assert_eq!(
        records,
        vec![
            record("db", &[], [10, 0, 0, 3]),
            record("WEB", &["w"], [10, 0, 0, 4])
        ]
    );
    assert!(remove_record(&dir, "web.").unwrap());
    assert!(!remove_record(&dir, "web").unwrap());
    assert_eq!(
        read_records(&dir).unwrap(),
        vec![record("db", &[], [10, 0, 0, 3])]
    );
}

#[test]
fn concurrent_add_record_loses_nothing() {
    let (_tmp, dir) = network_dir();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let dir = dir.clone();
            thread::spawn(move || {
                for i in 0..10u8 {
                    add_record(&dir, record(&format!("c{t}-{i}"), &[], [10, 0, t, i])).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(read_records(&dir).unwrap().len(), 80);
}

#[test]
fn bad_names_are_refused() {
    let (_tmp, dir) = network_dir();
    for bad in ["", ".", "a..b", "with space", "x/y", &"l".repeat(64)] {
        let err = add_record(&dir, record(bad, &[], [10, 0, 0, 2])).unwrap_err();
        assert!(matches!(err, DnsError::BadName(_)), "{bad:?}: {err}");
    }
    let err = add_record(&dir, record("ok", &["bad alias"], [10, 0, 0, 2])).unwrap_err();
    assert!(matches!(err, DnsError::BadName(_)));
    add_record(
        &dir,
        record("My_app-1.v2.", &["3f2a9c1b2d4e"], [10, 0, 0, 2]),
    )
    .unwrap();
}

// --- a tiny DNS client ------------------------------------------------------------------

fn query_message(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

fn exchange_udp(server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    socket.send_to(&message.to_vec().unwrap(), server).unwrap();
    let mut buf = [0; 4096];
    let (n, from) = socket.recv_from(&mut buf).expect("an answer");
    assert_eq!(from, server);
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.id(), message.id());
    assert_eq!(reply.message_type(), MessageType::Response);
    reply
}

fn query_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    exchange_udp(server, &query_message(name, rtype))
}

fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let message = query_message(name, rtype);
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let bytes = message.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0; u16::from_be_bytes(len).into()];
    stream.read_exact(&mut buf).unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.id(), message.id());
    reply
}

fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

// --- a fake upstream ---------------------------------------------------------------------

/// An upstream resolver on loopback (UDP and TCP, same port): `*.upstream.test` has the
/// address 192.0.2.7, `big.upstream.test` has 100 of them (too many for 512 bytes),
/// everything else is NXDOMAIN with an SOA. Counts the queries it gets.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn upstream_answer(query: &[u8], max: usize) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries().first()?.clone();
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_query(q.clone());
    let name = q.name().to_ascii().to_ascii_lowercase();
    if name.ends_with("upstream.test.") {
        let count = if name == "big.upstream.test." { 100 } else { 1 };
        if q.query_type() == RecordType::A {
            for i in 0..count {
                let ip = if count == 1 {
                    UPSTREAM_IP
                } else {
                    Ipv4Addr::new(198, 51, 100, i)
                };
                reply.add_answer(hickory_proto::rr::Record::from_rdata(
                    q.name().clone(),
                    30,
                    RData::A(A(ip)),
                ));
            }
        }
    } else {
        reply.set_response_code(ResponseCode::NXDomain);
        let zone = Name::from_ascii("test.").unwrap();
        reply.add_name_server(hickory_proto::rr::Record::from_rdata(
            zone.clone(),
            30,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 60, 60, 60, 30)),
        ));
    }
    if let Some(edns) = request.extensions() {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload());
        reply.set_edns(ours);
    }
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= max {
        return Some(bytes);
    }
    // Truncate as a real server does: header and question only, TC set.
    let mut truncated = reply.truncate();
    truncated.set_truncated(true);
    truncated.to_vec().ok()
}

impl FakeUpstream {
    fn start() -> Self {
        // The same port for both: another test may hold the TCP port of a free UDP one.
        let (udp, addr, tcp) = (0..32)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let addr = udp.local_addr().unwrap();
                TcpListener::bind(addr).ok().map(|tcp| (udp, addr, tcp))
            })
            .expect("a port free for both UDP and TCP");
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let udp_thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let max = Message::from_vec(&buf[..n])
                        .ok()
                        .and_then(|m| m.extensions().as_ref().map(|e| e.max_payload()))
                        .map_or(512, usize::from);
                    if let Some(answer) = upstream_answer(&buf[..n], max) {
                        let _ = udp.send_to(&answer, from);
                    }
                }
            })
        };
        let tcp_thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    let mut len = [0; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut buf = vec![0; u16::from_be_bytes(len).into()];
                    if stream.read_exact(&mut buf).is_err() {
                        continue;
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(answer) = upstream_answer(&buf, 65535) {
                        let _ = stream.write_all(&(answer.len() as u16).to_be_bytes());
                        let _ = stream.write_all(&answer);
                    }
                }
            })
        };
        FakeUpstream {
            addr,
            queries,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A server on a random loopback port for a fresh network directory, forwarding to a fake
/// upstream.
struct Fixture {
    server: RunningServer,
    upstream: FakeUpstream,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    fn start(records: &[Record]) -> Self {
        let (tmp, dir) = network_dir();
        write_records(&dir, records).unwrap();
        let upstream = FakeUpstream::start();
        let server = DnsServer::bind(
            &dir,
            "127.0.0.1:0".parse().unwrap(),
            Upstreams::Fixed(vec![upstream.addr]),
        )
        .unwrap()
        .spawn()
        .unwrap();
        Fixture {
            server,
            upstream,
            dir,
            _tmp: tmp,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn web_and_db() -> Vec<Record> {
    vec![
        record("web", &["w", "frontend"], [10, 120, 0, 2]),
        record("db", &["shared"], [10, 120, 0, 3]),
        record("cache", &["shared"], [10, 120, 0, 4]),
    ]
}

// --- the server --------------------------------------------------------------------------

#[test]
fn dns_container_name_answers_its_address() {
    let f = Fixture::start(&web_and_db());
    let reply = query_udp(f.addr(), "web", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative());
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 2)]);
    assert_eq!(reply.answers()[0].ttl(), TTL);
    // Case, trailing dot and the network's name do not matter.
    for name in ["WEB.", "Web", "web.testnet", "web.TESTNET."] {
        let reply = query_udp(f.addr(), name, RecordType::A);
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(10, 120, 0, 2)],
            "{name}"
        );
        // The answer's owner is the name as asked, case included.
        let owner = reply.answers()[0].name().to_ascii();
        assert_eq!(owner.trim_end_matches('.'), name.trim_end_matches('.'));
    }
    assert_eq!(f.upstream.queries(), 0, "our names are never forwarded");
}

#[test]
fn dns_cname_answers_the_alias_then_the_targets_records() {
    let f = Fixture::start(&web_and_db());
    let cname = |name: &str, target: &str| Cname {
        name: name.into(),
        target: target.into(),
    };
    set_cname(&f.dir, cname("ext.ns.svc.cluster.local", "web")).unwrap();
    set_cname(&f.dir, cname("far", "www.upstream.test")).unwrap();
    // A later write of the address records keeps the aliases.
    add_record(&f.dir, record("other", &[], [10, 120, 0, 9])).unwrap();
    let targets = |reply: &Message| -> Vec<String> {
        reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::CNAME(c) => Some(c.0.to_ascii()),
                _ => None,
            })
            .collect()
    };

    // To one of ours: answered here, authoritative, nothing forwarded.
    let reply = query_udp(f.addr(), "EXT.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(targets(&reply), vec!["web.".to_string()]);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 2)]);
    assert_eq!(f.upstream.queries(), 0);

    // To a name of the world: the alias, then the upstream's answer for the target.
    let reply = query_udp(f.addr(), "far.testnet", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(targets(&reply), vec!["www.upstream.test.".to_string()]);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(f.upstream.queries(), 1);

    // Removed: the name is unknown again (forwarded, and the fake upstream knows nothing).
    assert!(remove_cname(&f.dir, "far").unwrap());
    assert!(!remove_cname(&f.dir, "far").unwrap());
    let reply = query_udp(f.addr(), "far", RecordType::A);
    assert!(targets(&reply).is_empty());
    assert!(a_records(&reply).is_empty());
    // A bad target is refused before it reaches the file.
    assert!(matches!(
        set_cname(&f.dir, cname("bad", "no spaces")),
        Err(DnsError::BadName(_))
    ));
}

#[test]
fn dns_alias_answers_and_shared_alias_answers_all() {
    let f = Fixture::start(&web_and_db());
    let reply = query_udp(f.addr(), "frontend", RecordType::A);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 2)]);
    let mut shared = a_records(&query_udp(f.addr(), "shared.testnet.", RecordType::A));
    shared.sort();
    assert_eq!(
        shared,
        vec![Ipv4Addr::new(10, 120, 0, 3), Ipv4Addr::new(10, 120, 0, 4)]
    );
}

#[test]
fn dns_other_types_of_our_names_are_empty() {
    let f = Fixture::start(&web_and_db());
    for rtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let reply = query_udp(f.addr(), "web", rtype);
        assert_eq!(reply.response_code(), ResponseCode::NoError, "{rtype}");
        assert!(reply.answers().is_empty(), "{rtype}");
    }
    assert_eq!(f.upstream.queries(), 0);
}

#[test]
fn dns_reverse_lookup_of_our_address_answers_the_name() {
    let f = Fixture::start(&web_and_db());
    let reply = query_udp(f.addr(), "2.0.120.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    match reply.answers().first().map(|r| r.data()) {
        Some(RData::PTR(ptr)) => assert_eq!(ptr.0.to_ascii(), "web.testnet."),
        other => panic!("no PTR: {other:?}"),
    }
}

#[test]
fn dns_file_changes_are_answered_without_restart() {
    let f = Fixture::start(&web_and_db());
    assert_eq!(
        a_records(&query_udp(f.addr(), "web", RecordType::A)),
        vec![Ipv4Addr::new(10, 120, 0, 2)]
    );
    // A new container, and web restarted with another address.
    add_record(&f.dir, record("api", &[], [10, 120, 0, 9])).unwrap();
    add_record(&f.dir, record("web", &[], [10, 120, 0, 5])).unwrap();
    assert_eq!(
        a_records(&query_udp(f.addr(), "api", RecordType::A)),
        vec![Ipv4Addr::new(10, 120, 0, 9)]
    );
    assert_eq!(
        a_records(&query_udp(f.addr(), "web", RecordType::A)),
        vec![Ipv4Addr::new(10, 120, 0, 5)]
    );
    // Removed: no longer ours, so forwarded, and the upstream does not know it.
    assert!(remove_record(&f.dir, "api").unwrap());
    let before = f.upstream.queries();
    let reply = query_udp(f.addr(), "api", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert!(a_records(&reply).is_empty());
    assert_eq!(f.upstream.queries(), before + 1);
    // A file that does not parse keeps the previous records.
    fs::write(f.dir.join(RECORDS_FILE), b"{not json").unwrap();
    assert_eq!(
        a_records(&query_udp(f.addr(), "web", RecordType::A)),
        vec![Ipv4Addr::new(10, 120, 0, 5)]
    );
    // A removed file means no records.
    fs::remove_file(f.dir.join(RECORDS_FILE)).unwrap();
    let reply = query_udp(f.addr(), "web", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
}

#[test]
fn dns_unknown_names_are_forwarded_as_the_upstream_answers() {
    let f = Fixture::start(&web_and_db());
    let reply = query_udp(f.addr(), "www.Upstream.test", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(!reply.authoritative());
    assert!(reply.recursion_available());
    assert_eq!(a_records(&reply), vec![UPSTREAM_IP]);
    // NXDOMAIN is relayed with its SOA; names under ours that we lack are forwarded too.
    let reply = query_udp(f.addr(), "nope.testnet", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert!(matches!(
        reply.name_servers().first().map(|r| r.data()),
        Some(RData::SOA(_))
    ));
    assert_eq!(f.upstream.queries(), 2);
}

#[test]
fn dns_truncated_upstream_answer_is_relayed_and_tcp_gets_it_whole() {
    let f = Fixture::start(&web_and_db());
    let reply = query_udp(f.addr(), "big.upstream.test", RecordType::A);
    assert!(reply.truncated(), "100 addresses do not fit in 512 bytes");
    let reply = query_tcp(f.addr(), "big.upstream.test", RecordType::A);
    assert!(!reply.truncated());
    assert_eq!(a_records(&reply).len(), 100);
    // With EDNS, the client's payload size goes upstream and the whole answer comes back.
    let mut message = query_message("big.upstream.test", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    message.set_edns(edns);
    let reply = exchange_udp(f.addr(), &message);
    assert!(!reply.truncated());
    assert_eq!(a_records(&reply).len(), 100);
}

#[test]
fn dns_tcp_queries_are_answered() {
    let f = Fixture::start(&web_and_db());
    let reply = query_tcp(f.addr(), "db", RecordType::A);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 3)]);
    let reply = query_tcp(f.addr(), "x.upstream.test", RecordType::A);
    assert_eq!(a_records(&reply), vec![UPSTREAM_IP]);
}

#[test]
fn dns_garbage_does_not_stop_the_server() {
    let f = Fixture::start(&web_and_db());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = query_message("web", RecordType::A).to_vec().unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 11],
        vec![0xff; 12],
        vec![0xff; 600],
        valid[..valid.len() - 3].to_vec(),
        // A header that claims 65535 questions.
        [&valid[..4], &[0xff, 0xff], &valid[6..]].concat(),
        // A name that points at itself (compression loop).
        [&valid[..12], &[0xc0, 0x0c], &valid[valid.len() - 4..]].concat(),
        // A response: must not be answered (reflection).
        [&valid[..2], &[0x80 | valid[2]], &valid[3..]].concat(),
    ];
    for seed in 0..200u32 {
        let mut bytes = valid.clone();
        let i = (seed as usize * 7) % bytes.len();
        bytes[i] ^= (seed % 251) as u8 + 1;
        garbage.push(bytes);
    }
    for datagram in &garbage {
        socket.send_to(datagram, f.addr()).unwrap();
    }
    // Garbage over TCP too: a length and then nonsense, and a half message.
    for junk in [&[0x00, 0x05, 1, 2, 3, 4, 5][..], &[0xff, 0xff, 1][..]] {
        let mut stream = TcpStream::connect(f.addr()).unwrap();
        let _ = stream.write_all(junk);
    }
    // Non-query opcodes and several questions get an error, not a crash.
    let mut update = query_message("web", RecordType::A);
    update.set_op_code(OpCode::Update);
    assert_eq!(
        exchange_udp(f.addr(), &update).response_code(),
        ResponseCode::NotImp
    );
    let mut two = query_message("web", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
    assert_eq!(
        exchange_udp(f.addr(), &two).response_code(),
        ResponseCode::FormErr
    );

    let reply = query_udp(f.addr(), "web", RecordType::A);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 2)]);
    let reply = query_tcp(f.addr(), "web", RecordType::A);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 120, 0, 2)]);
}

#[test]
fn dns_dead_upstream_gives_servfail_in_time() {
    let (_tmp, dir) = network_dir();
    // A port where nothing answers: UDP to a bound socket that never replies.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = DnsServer::bind(
        &dir,
        "127.0.0.1:0".parse().unwrap(),
        Upstreams::Fixed(vec![silent.local_addr().unwrap()]),
    )
    .unwrap()
    .spawn()
    .unwrap();
    let start = Instant::now();
    let reply = query_udp(server.local_addr(), "example.com", RecordType::A);
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    server.stop().unwrap();
}

#[test]
fn dns_second_upstream_is_tried_when_the_first_refuses() {
    let (_tmp, dir) = network_dir();
    // The first upstream is a closed port: ICMP port unreachable, an error at once.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = FakeUpstream::start();
    let server = DnsServer::bind(
        &dir,
        "127.0.0.1:0".parse().unwrap(),
        Upstreams::Fixed(vec![closed, upstream.addr]),
    )
    .unwrap()
    .spawn()
    .unwrap();
    let reply = query_udp(server.local_addr(), "a.upstream.test", RecordType::A);
    assert_eq!(a_records(&reply), vec![UPSTREAM_IP]);
}

#[test]
fn dns_server_stops_and_frees_its_port() {
    let (_tmp, dir) = network_dir();
    let server = DnsServer::bind(
        &dir,
        "127.0.0.1:0".parse().unwrap(),
        Upstreams::Fixed(vec![]),
    )
    .unwrap()
    .spawn()
    .unwrap();
    let addr = server.local_addr();
    // No upstreams: unknown names fail.
    assert_eq!(
        query_udp(addr, "example.com", RecordType::A).response_code(),
        ResponseCode::ServFail
    );
    server.stop().unwrap();
    let again = DnsServer::bind(&dir, addr, Upstreams::Fixed(vec![])).unwrap();
    assert_eq!(again.local_addr(), addr);
}

/// The resident memory of a server that has answered some queries: printed, and bounded
/// loosely (the test process also holds the test harness).
#[test]
fn dns_server_memory_stays_small() {
    let f = Fixture::start(&web_and_db());
    let rss = || -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    for _ in 0..200 {
        query_udp(f.addr(), "web", RecordType::A);
    }
    let warm = rss();
    for _ in 0..2000 {
        query_udp(f.addr(), "web", RecordType::A);
    }
    for _ in 0..200 {
        query_udp(f.addr(), "x.upstream.test", RecordType::A);
    }
    let after = rss();
    eprintln!("VmRSS of the test process: {warm} kB warm, {after} kB after 2,200 more queries");
    assert!(after < warm + 4096, "grew from {warm} kB to {after} kB");
}
