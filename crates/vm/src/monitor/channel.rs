//! The agent's channel as the monitor shares it: frames from the agent relayed to the
//! clients whose sessions they belong to (and the main process's output to its log), the
//! clients' requests relayed to the agent under sessions of the monitor's own.

use super::*;

pub(super) fn send_agent(sh: &Shared, f: &Frame) -> std::io::Result<()> {
    let mut w = sh.agent_w.lock().expect("agent writer");
    f.write_to(&mut *w)
}

fn send_client(sh: &Shared, client: u64, f: &Frame) {
    let stream = sh
        .clients
        .lock()
        .expect("clients")
        .get(&client)
        .and_then(|s| s.try_clone().ok());
    if let Some(mut s) = stream {
        // A client that stopped reading loses its frames, never the VM's other sessions:
        // writes to it are bounded by a timeout.
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = f.write_to(&mut s);
    }
}

/// Reads the agent's frames and routes them: session 0 to the log and the attached client,
/// the rest to the client that owns the session.
pub(super) fn agent_reader(sh: Arc<Shared>, mut stream: UnixStream, mut reader: FrameReader) {
    loop {
        let f = match reader.read_from(&mut stream) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(proto::ProtoError::Io(_)) => return,
            Err(e) => {
                tracing::warn!("guest agent: {e}; dropping what was buffered");
                reader = FrameReader::new();
                continue;
            }
        };
        if f.session == 0 {
            match f.kind {
                Kind::Stdout | Kind::Stderr => {
                    let stream = if f.kind == Kind::Stdout {
                        "stdout"
                    } else {
                        "stderr"
                    };
                    if let Some(log) = sh.log.lock().expect("log").as_mut() {
                        write_log(log, stream, &f.payload);
                    }
                }
                Kind::Exit => {
                    if let Ok(e) = f.parse::<proto::Exit>() {
                        *sh.main_exit.lock().expect("exit") = Some(e);
                    }
                }
                Kind::Response => {
                    if let Ok(Response::Error { message, code }) = f.parse::<Response>() {
                        if let Some(log) = sh.log.lock().expect("log").as_mut() {
                            write_log(log, "stderr", format!("{message}\n").as_bytes());
                        }
                        *sh.main_exit.lock().expect("exit") = Some(proto::Exit {
                            code: if code == 0 { 125 } else { code },
                            signal: None,
                        });
                    }
                }
                _ => {}
            }
            let attached = *sh.attached.lock().expect("attached");
            if let Some(c) = attached {
                send_client(&sh, c, &f);
            }
            let ended = f.kind == Kind::Exit
                || (f.kind == Kind::Response
                    && matches!(f.parse::<Response>(), Ok(Response::Error { .. })));
            if ended {
                // The main process is the VM's reason to run, as a container's process is.
                sh.shutting_down.store(true, Ordering::SeqCst);
                let _ = send_agent(
                    &sh,
                    &Frame::json(Kind::Request, 0, &Request::Shutdown { reboot: false }),
                );
            }
            continue;
        }
        let route = sh
            .sessions
            .lock()
            .expect("sessions")
            .get(&f.session)
            .copied();
        if let Some((client, local)) = route {
            // A session ends with its process's exit, or with its one answer.
            let done = f.kind == Kind::Exit
                || (f.kind == Kind::Response
                    && !matches!(f.parse::<Response>(), Ok(Response::Started { .. })));
            send_client(
                &sh,
                client,
                &Frame {
                    session: local,
                    ..f
                },
            );
            if done {
                sh.sessions.lock().expect("sessions").remove(&f.session);
            }
        }
    }
}

fn write_log(log: &mut File, stream: &str, data: &[u8]) {
    let time = now();
    let mut out = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let entry = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": stream,
            "time": time,
        });
        serde_json::to_writer(&mut out, &entry).expect("json");
        out.push(b'\n');
    }
    let _ = log.write_all(&out);
}

pub(super) fn serve_clients(sh: Arc<Shared>, listener: UnixListener) {
    let mut next_client = 1u64;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let client = next_client;
        next_client += 1;
        let Ok(w) = conn.try_clone() else { continue };
        sh.clients.lock().expect("clients").insert(client, w);
        let sh = sh.clone();
        std::thread::spawn(move || serve_client(sh, client, conn));
    }
}

fn serve_client(sh: Arc<Shared>, client: u64, mut conn: UnixStream) {
    let mut reader = FrameReader::new();
    let mut mine: HashMap<u32, u32> = HashMap::new();
    while let Ok(Some(f)) = reader.read_from(&mut conn) {
        if f.session == 0 {
            match f.kind {
                Kind::Request if matches!(f.parse::<Request>(), Ok(Request::Attach)) => {
                    *sh.attached.lock().expect("attached") = Some(client);
                    sh.attach_cv.notify_all();
                    if let Some(e) = *sh.main_exit.lock().expect("exit") {
                        send_client(&sh, client, &Frame::json(Kind::Exit, 0, &e));
                    }
                }
                // Stdin and terminal requests for the main process, from its attached client.
                Kind::Stdin | Kind::Request
                    if *sh.attached.lock().expect("attached") == Some(client) =>
                {
                    let _ = send_agent(&sh, &f);
                }
                _ => send_client(
                    &sh,
                    client,
                    &Frame::json(
                        Kind::Response,
                        0,
                        &Response::Error {
                            message: "session 0 is the main process's: attach first".into(),
                            code: 125,
                        },
                    ),
                ),
            }
            continue;
        }
        if f.kind != Kind::Request && f.kind != Kind::Stdin {
            continue;
        }
        let global = match mine.get(&f.session) {
            Some(g) => *g,
            None if f.kind == Kind::Request => {
                let g = sh.next_session.fetch_add(1, Ordering::SeqCst);
                mine.insert(f.session, g);
                sh.sessions
                    .lock()
                    .expect("sessions")
                    .insert(g, (client, f.session));
                g
            }
            None => continue,
        };
        if send_agent(
            &sh,
            &Frame {
                session: global,
                ..f
            },
        )
        .is_err()
        {
            break;
        }
    }
    // The client went: its processes lose their stdin; its routes go.
    for g in mine.values() {
        let _ = send_agent(
            &sh,
            &Frame {
                kind: Kind::Stdin,
                session: *g,
                payload: Vec::new(),
            },
        );
        sh.sessions.lock().expect("sessions").remove(g);
    }
    sh.clients.lock().expect("clients").remove(&client);
    let mut a = sh.attached.lock().expect("attached");
    if *a == Some(client) {
        *a = None;
    }
}
