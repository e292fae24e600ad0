//! The `corral` binary: parses the command line and calls the library crates. No logic of its
//! own lives here; each verb's wiring is in `commands/`.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod exit;
mod output;
mod progress;
mod runtime_cli;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a long-running `corral serve` gives freed memory back
/// to the system (decay, purged by a background thread) instead of keeping its high-water mark
/// spread over per-thread arenas. docs/benchmarks.md has the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    quiet_broken_pipe();
    // The container's own processes: dispatched before any parsing, on the start path.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("__monitor") => std::process::exit(corral_engine::monitor::main(&argv[2..])),
        Some("__pod-member") => std::process::exit(corral_engine::pod_vm::member_main(&argv[2..])),
        Some("__vm-monitor") => std::process::exit(corral_vm::monitor::main_from_args(&argv[2..])),
        Some("__health") => std::process::exit(corral_engine::health::main(&argv[2..])),
        Some("__pod") => std::process::exit(corral_container::sandbox::main(&argv[2..])),
        Some("__dns") => std::process::exit(commands::dns(&argv[2..])),
        // The OCI runtime command line: `corral runtime ...`, or a link named corral-runtime.
        Some("runtime") => {
            let mut a = vec![std::ffi::OsString::from("corral-runtime")];
            a.extend(argv[2..].iter().cloned());
            std::process::exit(runtime_cli::main(a));
        }
        _ => {}
    }
    let invoked = argv
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if invoked.starts_with("corral-runtime") {
        std::process::exit(runtime_cli::main(argv));
    }
    let code = match cli::Cli::try_parse() {
        Ok(cli) => {
            init_logging(&cli.log_level);
            match commands::run(cli) {
                Ok(()) => 0,
                Err(err) => exit::report(&err),
            }
        }
        Err(err) => {
            // Help and version are not errors; bad usage is corral's own failure (125).
            let code = if err.use_stderr() {
                exit::CORRAL_FAILURE
            } else {
                0
            };
            let _ = err.print();
            code
        }
    };
    std::process::exit(code);
}

/// `corral image inspect X | head` must end quietly, as a C tool killed by SIGPIPE does: Rust
/// ignores SIGPIPE and `println!` panics on EPIPE instead, so that one panic becomes exit 141
/// (128 + SIGPIPE). Restoring SIGPIPE's default would need unsafe code in the binary.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
