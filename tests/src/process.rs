//! Running a command with a deadline.
//!
//! A hung child must fail the test, not hang the whole run: [`run_bounded`] reads stdout and
//! stderr in threads (so a chatty child cannot block on a full pipe), polls for the exit, and
//! kills the child when the deadline passes, then panics with what it printed so far.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion with `stdin` fed to it (or `/dev/null` when `None`).
///
/// # Panics
/// If the command cannot be started, or is still running after `timeout` (it is killed first).
pub fn run_bounded(cmd: &mut Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));

    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A child that exits without reading all of its input gives EPIPE: not our failure.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));

    let status = wait_deadline(&mut child, timeout);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{shown} did not finish within {timeout:?} (killed)\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Waits for `child` until `timeout`; on timeout kills it, reaps it and returns `None`.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Formats an [`Output`] for an assertion message: exit status, stdout and stderr.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a program with arguments under [`run_bounded`] and panics unless it exits 0; returns
/// its stdout.
pub fn run_ok(program: &str, args: &[&str], timeout: Duration) -> String {
    let out = run_bounded(Command::new(program).args(args), None, timeout);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
