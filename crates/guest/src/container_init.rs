//! `corral-guest --container-init -- CMD ARGS...`: a small init for containers (`corral run
//! --init`), tini's job. As PID 1 of a container it runs the command as its only child,
//! passes on the signals it gets (`stop`'s SIGTERM reaches the command even though a PID 1
//! that installs no handler never sees it), reaps every orphan that the command's children
//! leave (no zombies pile up), and exits with the command's status (128 + N for signal N).
//!
//! It is this binary because it is static: it runs in any image, with or without a C
//! library. The engine binds it read-only at `/dev/init` and puts it before the command.

use std::process::{Command, ExitCode};

use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

/// The flag that selects this mode (checked before anything else, also as PID 1).
pub const FLAG: &str = "--container-init";

/// The signals passed on to the command: every one a process may catch, except those that
/// report on the init itself (SIGCHLD reaps; faults are not forwarded).
const FORWARDED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM, SIGPIPE,
    SIGTSTP, SIGTTIN, SIGTTOU, SIGVTALRM, SIGPROF, SIGIO, SIGURG, SIGXCPU, SIGXFSZ,
];

fn say(msg: std::fmt::Arguments<'_>) {
    eprintln!("corral-init: {msg}");
}

/// Runs `args` (after an optional `--`) under this init; never returns while it runs.
pub fn run(args: &[String]) -> ExitCode {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let Some((program, rest)) = args.split_first() else {
        say(format_args!(
            "usage: corral-guest {FLAG} -- COMMAND [ARG...]"
        ));
        return ExitCode::from(2);
    };
    // The handlers exist before the child does: its end (SIGCHLD) cannot be missed, and a
    // signal that arrives while it starts is passed on once it runs.
    let mut wanted = FORWARDED.to_vec();
    wanted.push(SIGCHLD);
    let mut signals = match Signals::new(&wanted) {
        Ok(s) => s,
        Err(e) => {
            say(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::from(126);
        }
    };
    // Handlers are reset by exec; the mask is not touched, so the command starts with the
    // signal state docker gives a process.
    let child = match Command::new(program).args(rest).spawn() {
        Ok(c) => c,
        Err(e) => {
            say(format_args!("cannot run {program}: {e}"));
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let child_pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    // std keeps a handle; the reaping below is done by pid, so the handle is let go.
    drop(child);
    loop {
        for sig in signals.wait() {
            if sig != SIGCHLD {
                if let Some(s) = Signal::from_named_raw(sig) {
                    let _ = rustix::process::kill_process(child_pid, s);
                }
                continue;
            }
            // Reap everything that is done: the command, and any orphan given to PID 1.
            while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG)
            {
                if pid == child_pid {
                    let code = match (status.exit_status(), status.terminating_signal()) {
                        (Some(c), _) => c,
                        (None, Some(s)) => 128 + s,
                        _ => 1,
                    };
                    return ExitCode::from(code as u8);
                }
            }
        }
    }
}
