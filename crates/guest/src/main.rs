//! `corral-guest`: PID 1 of a corral VM, or a test agent on a unix socket.
//!
//! As PID 1 ([`init`]) it mounts the kernel filesystems, loads the modules the initramfs
//! lists, finds the virtio-serial port `corral.agent` and serves the protocol on it
//! ([`server`]) until a `Shutdown`. It never exits: on a fatal error it logs, syncs and
//! powers the machine off (PID 1 exiting panics the kernel).
//!
//! `corral-guest --container-init -- CMD...` is instead a container's init (`corral run
//! --init`, [`container_init`]).
//!
//! Run as any other pid, `corral-guest --serve PATH` connects to a unix socket and
//! `corral-guest --listen PATH` listens on one (one connection at a time, the next accepted
//! when it closes), and serves the same protocol there without touching the machine: no
//! mounts, no modules, `Boot` without root or interfaces just answers `Ready`. The
//! integration tests drive it this way.
//!
//! Threads: the frame reader (the main thread) never blocks on a session; every session's
//! output is pumped by threads of its own, and frames are written through one mutex so they
//! never interleave ([`server::Out`]). One reaper thread ([`reaper`]) waits for every child.

mod boot;
mod container_init;
mod enter;
mod exec;
mod files;
mod info;
mod init;
mod netconf;
mod reaper;
mod server;

use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::Arc;

/// Prints one line to stderr (the console in a VM) prefixed `corral-guest: `.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("corral-guest: {}", format_args!($($arg)*))
    };
}

const USAGE: &str = "usage: corral-guest (as PID 1 of a corral VM)\n       \
                     corral-guest --serve SOCKET | --listen SOCKET (tests, any other pid)\n       \
                     corral-guest --container-init -- COMMAND [ARG...] (a container's init)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(container_init::FLAG) {
        // `corral run --init`: PID 1 of a container, not of a VM.
        return container_init::run(&argv[1..]);
    }
    if rustix::process::getpid().is_init() {
        init::run();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, path) = match args.as_slice() {
        [m, p] if m == "--serve" || m == "--listen" => (m.as_str(), p.clone()),
        [h] if h == "--help" || h == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let agent = Arc::new(server::Agent::new(false));
    if mode == "--serve" {
        let stream = match UnixStream::connect(&path) {
            Ok(s) => s,
            Err(e) => {
                log!("cannot connect to {path}: {e}");
                return ExitCode::from(1);
            }
        };
        serve_stream(&agent, stream);
        return ExitCode::SUCCESS;
    }
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            log!("cannot listen on {path}: {e}");
            return ExitCode::from(1);
        }
    };
    for stream in listener.incoming() {
        match stream {
            Ok(s) => serve_stream(&agent, s),
            Err(e) => log!("accept on {path}: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// Serves one connection until it ends.
fn serve_stream(agent: &Arc<server::Agent>, stream: UnixStream) {
    match stream.try_clone() {
        Ok(w) => {
            agent.out.attach(Box::new(w));
            agent.serve(stream);
            agent.out.detach();
        }
        Err(e) => log!("cannot clone the connection: {e}"),
    }
}
