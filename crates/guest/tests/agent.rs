//! The agent binary over a unix socket (`corral-guest --listen`), as the host drives it:
//! exec, stdin, exit codes, signals, ttys, file copies, info, concurrent sessions, hostile
//! bytes. No VM: the agent runs as an ordinary process and spawns on this machine.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use corral_guest::proto::{Exec, Exit, Frame, FrameReader, Kind, Request, Response, CHUNK};

/// A running agent; killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_corral-guest"))
            .arg("--listen")
            .arg(&socket)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the agent never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent {
            child,
            socket,
            _dir: dir,
        }
    }

    fn connect(&self) -> Conn {
        // The socket's file appears at bind(), a moment before listen(): a connection refused
        // then is tried again.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&self.socket) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("connecting to the agent at {}: {e}", self.socket.display()),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            reader: FrameReader::new(),
            pending: Vec::new(),
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection to the agent.
struct Conn {
    stream: UnixStream,
    reader: FrameReader,
    /// Frames read while looking for another session's.
    pending: Vec<Frame>,
}

/// What a session produced.
#[derive(Debug, Default)]
struct Output {
    started: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<Exit>,
    response: Option<Response>,
}

impl Conn {
    fn send(&mut self, f: &Frame) {
        f.write_to(&mut self.stream).unwrap();
    }

    fn request(&mut self, session: u32, r: &Request) {
        self.send(&Frame::json(Kind::Request, session, r));
    }

    fn stdin(&mut self, session: u32, data: &[u8]) {
        self.send(&Frame {
            kind: Kind::Stdin,
            session,
            payload: data.to_vec(),
        });
    }

    /// The next frame of `session`.
    fn next(&mut self, session: u32) -> Frame {
        if let Some(i) = self.pending.iter().position(|f| f.session == session) {
            return self.pending.remove(i);
        }
        loop {
            let f = self
                .reader
                .read_from(&mut self.stream)
                .unwrap()
                .expect("the agent closed the connection");
            if f.session == session {
                return f;
            }
            self.pending.push(f);
        }
    }

    /// The next Response of `session`.
    fn response(&mut self, session: u32) -> Response {
        let f = self.next(session);
        assert_eq!(f.kind, Kind::Response, "{f:?}");
        f.parse().unwrap()
    }

    /// Reads `session` until its Exit or a final Response (Ok / Error).
    fn collect(&mut self, session: u32) -> Output {
        let mut out = Output::default();
        loop {
            let f = self.next(session);
            match f.kind {
                Kind::Stdout => {
                    assert!(f.payload.len() <= CHUNK);
                    out.stdout.extend_from_slice(&f.payload)
                }
                Kind::Stderr => out.stderr.extend_from_slice(&f.payload),
                Kind::Exit => {
                    out.exit = Some(f.parse().unwrap());
                    return out;
                }
                Kind::Response => match f.parse::<Response>().unwrap() {
                    Response::Started { pid } => {
                        assert!(out.stdout.is_empty() && out.stderr.is_empty());
                        out.started = Some(pid);
                    }
                    r => {
                        out.response = Some(r);
                        return out;
                    }
                },
                k => panic!("unexpected {k:?} from the agent"),
            }
        }
    }

    fn exec(&mut self, session: u32, argv: &[&str]) -> Output {
        self.request(session, &exec(argv));
        self.collect(session)
    }
}

fn exec(argv: &[&str]) -> Request {
    Request::Exec(Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..Exec::default()
    })
}

fn code(o: &Output) -> i32 {
    o.exit.unwrap_or_else(|| panic!("no exit: {o:?}")).code
}

#[test]
fn exec_reports_output_and_exit_code() {
    let agent = Agent::start();
    let mut c = agent.connect();
    let o = c.exec(
        1,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo \"$0 $HOME\"; exit 3",
        ],
    );
    assert!(o.started.unwrap() > 0);
    assert_eq!(o.stdout, b"out\nsh \n");
    assert_eq!(o.stderr, b"err\n");
    assert_eq!(
        o.exit,
        Some(Exit {
            code: 3,
            signal: None
        })
    );
    // The environment is exactly the request's, the cwd is the request's.
    c.request(
        2,
        &Request::Exec(Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), "pwd; env | sort".into()],
            env: vec!["A=1".into(), "B=two=2".into()],
            cwd: "/tmp".into(),
            ..Exec::default()
        }),
    );
    let o = c.collect(2);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.starts_with("/tmp\nA=1\nB=two=2\n"), "{text}");
    assert!(!text.contains("HOME="), "{text}");
}

#[test]
fn stdin_round_trips() {
    let agent = Agent::start();
    let mut c = agent.connect();
    let mut req = exec(&["cat"]);
    if let Request::Exec(e) = &mut req {
        e.stdin = true;
    }
    c.request(5, &req);
    assert!(matches!(c.response(5), Response::Started { .. }));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in big.chunks(CHUNK) {
        c.stdin(5, chunk);
    }
    c.stdin(5, b"");
    let o = c.collect(5);
    assert_eq!(code(&o), 0);
    assert!(o.stdout == big, "{} bytes back", o.stdout.len());
}

#[test]
fn missing_program_is_127_and_not_executable_is_126() {
    let agent = Agent::start();
    let mut c = agent.connect();
    let o = c.exec(1, &["no-such-program-corral"]);
    match o.response {
        Some(Response::Error { code, message }) => {
            assert_eq!(code, 127);
            assert!(message.contains("no-such-program-corral"), "{message}");
        }
        r => panic!("{r:?}"),
    }
    let o = c.exec(2, &["/etc/passwd"]);
    assert!(
        matches!(o.response, Some(Response::Error { code: 126, .. })),
        "{o:?}"
    );
    // The session ids are free again and the agent still runs things.
    assert_eq!(code(&c.exec(1, &["true"])), 0);
}

#[test]
fn signal_ends_a_process_with_128_plus_n() {
    let agent = Agent::start();
    let mut c = agent.connect();
    c.request(9, &exec(&["sh", "-c", "echo up; sleep 30"]));
    assert!(matches!(c.response(9), Response::Started { .. }));
    assert_eq!(c.next(9).payload, b"up\n");
    let t = Instant::now();
    c.request(9, &Request::Signal { signal: 15 });
    let o = c.collect(9);
    assert_eq!(
        o.exit,
        Some(Exit {
            code: 143,
            signal: Some(15)
        })
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // A signal for a session that has no process is an error.
    c.request(77, &Request::Signal { signal: 9 });
    assert!(matches!(c.response(77), Response::Error { .. }));
}

#[test]
fn tty_exec_gets_a_terminal() {
    let agent = Agent::start();
    let mut c = agent.connect();
    c.request(
        3,
        &Request::Exec(Exec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "test -t 0 && test -t 1 && stty size && tty".into(),
            ],
            env: vec!["PATH=/usr/bin:/bin".into()],
            tty: true,
            stdin: true,
            rows: 33,
            cols: 101,
            ..Exec::default()
        }),
    );
    let o = c.collect(3);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{text}");
    assert!(text.contains("33 101"), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(o.stderr.is_empty());
}

#[test]
fn copy_in_and_out_round_trip_300k() {
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let data: Vec<u8> = (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
        .collect();
    let mut c = agent.connect();
    c.request(
        4,
        &Request::CopyIn {
            path: path.to_str().unwrap().into(),
            mode: 0o640,
        },
    );
    for chunk in data.chunks(CHUNK) {
        c.stdin(4, chunk);
    }
    c.stdin(4, b"");
    assert_eq!(c.response(4), Response::Ok);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // No temporary file is left next to it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    c.request(
        5,
        &Request::CopyOut {
            path: path.to_str().unwrap().into(),
        },
    );
    let o = c.collect(5);
    assert_eq!(o.response, Some(Response::Ok));
    assert!(o.stdout == data, "{} bytes back", o.stdout.len());

    c.request(
        6,
        &Request::CopyOut {
            path: "/no/such/file".into(),
        },
    );
    assert!(matches!(c.response(6), Response::Error { .. }));
    c.request(
        7,
        &Request::CopyIn {
            path: "/no/such/dir/file".into(),
            mode: 0o644,
        },
    );
    match c.response(7) {
        Response::Error { message, .. } => assert!(message.contains("/no/such/dir"), "{message}"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn info_and_ping_answer() {
    let agent = Agent::start();
    let mut c = agent.connect();
    c.request(1, &Request::Ping);
    assert!(matches!(c.response(1), Response::Pong { uptime_ms } if uptime_ms > 0));
    c.request(2, &Request::Info);
    let Response::Info(info) = c.response(2) else {
        panic!("not info")
    };
    let uname_r = Command::new("uname").arg("-r").output().unwrap().stdout;
    assert_eq!(info.kernel, String::from_utf8_lossy(&uname_r).trim());
    assert!(info.mem_total_kib > 0 && info.mem_available_kib > 0);
    assert!(info.mem_available_kib <= info.mem_total_kib);
    assert!(!info.hostname.is_empty());
    assert!(info.addresses.iter().all(|a| !a.starts_with("lo ")));
    // Boot without root or interfaces just answers Ready.
    c.request(
        0,
        &Request::Boot(corral_guest::proto::Boot {
            version: corral_guest::proto::VERSION,
            ..Default::default()
        }),
    );
    assert!(matches!(c.response(0), Response::Ready { .. }));
}

#[test]
fn concurrent_sessions_do_not_mix_and_requests_do_not_wait() {
    let agent = Agent::start();
    let mut c = agent.connect();
    let script = |ch: &str| {
        format!("i=0; while [ $i -lt 3000 ]; do echo {ch}{ch}{ch}{ch}{ch}{ch}{ch}{ch}; i=$((i+1)); done")
    };
    c.request(1, &exec(&["sh", "-c", &script("a")]));
    c.request(2, &exec(&["sh", "-c", &script("b")]));
    // A slow session does not hold up a ping.
    c.request(3, &exec(&["sleep", "5"]));
    let t = Instant::now();
    c.request(4, &Request::Ping);
    assert!(matches!(c.response(4), Response::Pong { .. }));
    assert!(t.elapsed() < Duration::from_secs(2));
    let (a, b) = (c.collect(1), c.collect(2));
    for (o, line) in [(a, "aaaaaaaa"), (b, "bbbbbbbb")] {
        assert_eq!(code(&o), 0);
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.lines().count(), 3000);
        assert!(text.lines().all(|l| l == line));
    }
    c.request(3, &Request::Signal { signal: 9 });
    assert_eq!(code(&c.collect(3)), 137);
}

#[test]
fn garbage_is_answered_and_survived() {
    let mut agent = Agent::start();
    let mut c = agent.connect();
    // A frame that splits but does not parse: an Error on its session.
    c.send(&Frame {
        kind: Kind::Request,
        session: 8,
        payload: b"{\"op\":\"rm_rf\"}".to_vec(),
    });
    assert!(matches!(c.response(8), Response::Error { code: 125, .. }));
    // A frame of a kind the host must not send.
    c.send(&Frame {
        kind: Kind::Exit,
        session: 9,
        payload: b"{}".to_vec(),
    });
    assert!(matches!(c.response(9), Response::Error { .. }));
    // Stdin for a session that does not exist is dropped.
    c.stdin(10, b"nobody");
    // Bytes that are not frames at all: the agent drops them and reads on.
    c.stream.write_all(&[0xff; 64]).unwrap();
    c.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.alive());
    c.request(11, &Request::Ping);
    assert!(matches!(c.response(11), Response::Pong { .. }));
    // A length that claims more than MAX_FRAME.
    c.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.request(12, &Request::Ping);
    assert!(matches!(c.response(12), Response::Pong { .. }));
    // After a connection ends, the next one is served.
    drop(c);
    let mut c = agent.connect();
    assert_eq!(code(&c.exec(1, &["true"])), 0);
    assert!(agent.alive());
}

#[test]
fn serve_mode_connects_to_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket: &Path = &dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral-guest"))
        .arg("--serve")
        .arg(socket)
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut c = Conn {
        stream,
        reader: FrameReader::new(),
        pending: Vec::new(),
    };
    assert_eq!(c.exec(1, &["sh", "-c", "exit 7"]).exit.unwrap().code, 7);
    c.request(2, &Request::Shutdown { reboot: false });
    assert_eq!(c.response(2), Response::Ok);
    assert!(child.wait().unwrap().success());
}

#[test]
fn background_child_does_not_hold_the_session() {
    let agent = Agent::start();
    let mut c = agent.connect();
    let t = Instant::now();
    // The background child keeps stdout and stderr open; the session ends with its parent,
    // with all the parent's output.
    let o = c.exec(1, &["sh", "-c", "sleep 30 & seq 1 20000; echo done"]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.ends_with("19999\n20000\ndone\n"),
        "{}",
        &text[text.len() - 40..]
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}
