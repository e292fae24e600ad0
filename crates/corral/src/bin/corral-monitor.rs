//! `corral-monitor`: the per-container monitor as an executable of its own.
//!
//! The same code as `corral __monitor` (corral-container's `process::monitor` with the engine's
//! hooks: events, and the clean-up of an `--rm` container's networks and volumes), linked without
//! the image store, the registry client and the command line, so that each running container
//! costs a fraction of the memory: the monitor's relocated data and heap are private to every
//! container, and the container's init is forked from it.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(corral_engine::monitor::main(&args));
}
