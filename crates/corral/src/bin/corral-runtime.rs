//! `corral-runtime`: corral's OCI runtime (runc's command line) as an executable of its own.
//!
//! The same code as `corral runtime ...` and a `corral-runtime` link to corral, linked without
//! the image store, the registry client and the networks: a runtime is started once per
//! container operation by podman's conmon or containerd's shim, and a smaller binary loads
//! faster (fewer pages, fewer relocations) and leaves less in the container's init, which is
//! forked from it.

#![forbid(unsafe_code)]

#[path = "../runtime_cli.rs"]
mod runtime_cli;

fn main() {
    std::process::exit(runtime_cli::main(std::env::args_os().collect()));
}
