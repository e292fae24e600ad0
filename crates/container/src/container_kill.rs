//! `kill` and `stop`.

use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::state::{Containers, StateError, Status};

/// Why a signal could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The container does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// Unknown signal.
    #[error("unknown signal {0:?}: use a number or a name such as TERM, KILL, HUP")]
    BadSignal(String),
    /// kill(2) failed.
    #[error("signalling container {0}")]
    Kill(String, #[source] std::io::Error),
}

/// Parses `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<Signal, KillError> {
    let bad = || KillError::BadSignal(s.to_owned());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(bad);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "WINCH" => Signal::WINCH,
        _ => return Err(bad()),
    })
}

/// Sends `sig` to the container's process.
pub fn kill(containers: &Containers, id: &str, sig: Signal) -> Result<(), KillError> {
    let s = containers.load(id)?;
    let (Status::Running, Some(pid)) = (s.status, s.pid) else {
        return Err(KillError::NotRunning(s.name));
    };
    let pid = Pid::from_raw(pid).ok_or_else(|| KillError::NotRunning(s.name.clone()))?;
    if matches!(sig, Signal::KILL | Signal::TERM | Signal::INT) {
        // An exit someone asked for: the restart policy must not undo it.
        let mut s2 = s.clone();
        s2.stop_requested = true;
        containers.save(&s2)?;
    }
    kill_process(pid, sig).map_err(|e| KillError::Kill(s.name, e.into()))
}

/// Waits until the container is no longer running, up to `timeout`; true if it stopped.
pub fn wait_exit(
    containers: &Containers,
    id: &str,
    timeout: Option<Duration>,
) -> Result<bool, StateError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    loop {
        match containers.load(id) {
            Ok(s) if s.status == Status::Running => {}
            Ok(_) => return Ok(true),
            // Removed (--rm): it has exited.
            Err(StateError::NotFound(_)) => return Ok(true),
            Err(e) => return Err(e),
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after `timeout`.
pub fn stop(containers: &Containers, id: &str, timeout: Duration) -> Result<(), KillError> {
    stop_with(containers, id, Signal::TERM, timeout)
}

/// `sig` (the container's stop signal), then SIGKILL after `timeout`.
pub fn stop_with(
    containers: &Containers,
    id: &str,
    sig: Signal,
    timeout: Duration,
) -> Result<(), KillError> {
    if sig != Signal::TERM && sig != Signal::KILL && sig != Signal::INT {
        // kill() marks only TERM, KILL and INT as asked-for exits: a stop by any signal is.
        let mut s = containers.load(id)?;
        if s.status == Status::Running {
            s.stop_requested = true;
            containers.save(&s)?;
        }
    }
    match kill(containers, id, sig) {
        Err(KillError::NotRunning(_)) => return Ok(()),
        r => r?,
    }
    if wait_exit(containers, id, Some(timeout))? {
        return Ok(());
    }
    match kill(containers, id, Signal::KILL) {
        Err(KillError::NotRunning(_)) => return Ok(()),
        r => r?,
    }
    wait_exit(containers, id, Some(Duration::from_secs(10)))?;
    Ok(())
}
