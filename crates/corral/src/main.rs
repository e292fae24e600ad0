//! The `corral` binary: parses the command line and calls the library crates. No logic of its
//! own lives here; each verb's wiring is in `commands/`.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod exit;
mod progress;

use clap::Parser;

fn main() {
    // The container's own processes: dispatched before any parsing, on the start path.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("__init") => commands::container::init(&argv[2..]),
        Some("__monitor") => std::process::exit(commands::container::monitor(&argv[2..])),
        _ => {}
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

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
