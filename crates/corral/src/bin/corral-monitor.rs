//! `corral-monitor`: the per-container monitor as an executable of its own.
//!
//! The same code as `corral __monitor` (corral-container's `process::monitor`), linked without
//! the image store, the registry client and the command line, so that each running container
//! costs a fraction of the memory: the monitor's relocated data and heap are private to every
//! container, and the container's init is forked from it.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // CORRAL_ROOT is the containers directory's parent.
    let root = args
        .first()
        .map(std::path::PathBuf::from)
        .and_then(|d| d.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    // An `--rm` container's networks go with it.
    let release = move |s: &corral_container::State| {
        let _ = corral_net::Networks::open(&root).release(&s.id);
    };
    std::process::exit(corral_container::process::monitor::main_from_args(
        &args,
        Some(&release),
    ));
}
