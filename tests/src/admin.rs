//! Helpers for the tests of commit, diff, history (`tests/commit.rs`) and of the admin verbs
//! (`tests/admin.rs`: update, attach, system df/prune, image and network listings,
//! completion, man pages, and the late `run` flags): a world with the busybox image, unique
//! names, container state by `inspect`, and log polling.

use std::time::Duration;

use serde_json::Value;

use crate::containers::poll_until;
use crate::engine::json_at;
use crate::Corral;

/// corral's own failures (docs/cli-containers.md).
pub const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command: containers here live seconds.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a state change (an exit noticed, a log line written) may take to show.
pub const SETTLE: Duration = Duration::from_secs(15);
/// A container command that runs until SIGTERM, then exits 0 at once.
pub const UNTIL_TERM: &str = "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done";

/// A fresh world with the busybox image imported and a short command deadline.
pub fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

pub use crate::unique_name;

pub use crate::stdout_of;

/// `.State` of `inspect NAME` (docker's shape).
pub fn state(c: &Corral, name: &str) -> Value {
    json_at(&c.docker_inspect(&[name]), &["State"]).clone()
}

/// Waits until `inspect NAME` shows `.State.Status == status`; that state.
pub fn wait_status(c: &Corral, name: &str, status: &str) -> Value {
    let mut last = Value::Null;
    let reached = poll_until(SETTLE, || {
        last = state(c, name);
        last["Status"] == status
    });
    assert!(
        reached,
        "{name} never reached status {status:?}; State: {last:#}"
    );
    last
}

/// Waits until `corral logs NAME` contains `needle`.
pub fn wait_for_log(c: &Corral, name: &str, needle: &str) {
    let mut last = String::new();
    let seen = poll_until(SETTLE, || {
        let out = c.cmd(&["logs", name]);
        last = format!(
            "{}{}",
            stdout_of(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        last.contains(needle)
    });
    assert!(
        seen,
        "logs of {name} never showed {needle:?}; last:\n{last}"
    );
}

/// `corral exec NAME CMD...`, panicking unless it succeeds; its stdout, trimmed.
pub fn exec_ok(c: &Corral, name: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    c.ok(&args).trim().to_owned()
}

/// Non-empty trimmed lines of `text`.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
