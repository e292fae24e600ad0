//! One module per group of verbs: each turns parsed flags into library calls (the engine's for
//! workloads) and prints the result. No command module calls another.

mod build;
mod compose;
mod container;
mod host;
mod image;
mod network;
mod pod;
mod run_spec;
mod serve;
mod stats;
mod system;
mod vm;
mod volume;

use anyhow::Result;
use corral_engine::Engine;

use crate::cli::{Cli, Command, ImageCommand};

pub use network::dns;

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let root = cli.root;
    let engine = Engine::current(&root)?;
    match cli.command {
        Command::Containers(cmd) | Command::Container(cmd) => container::run(&engine, cmd),
        Command::Events(a) => container::events(&engine, &a),
        Command::Pod(cmd) => pod::run(&engine, cmd),
        Command::Volume(cmd) => volume::run(&engine, cmd),
        Command::Network(cmd) => network::run(&engine, cmd),
        Command::Vm(cmd) => vm::run(&engine, cmd),
        Command::Image(cmd) => image::run(&engine, cmd),
        Command::Build(a) => build::build(&engine, a),
        Command::Compose(a) => compose::run(&engine, a),
        Command::Serve(a) => serve::run(engine, a),
        Command::Builder(cmd) => build::builder(&engine, cmd),
        Command::Pull(a) => image::run(&engine, ImageCommand::Pull(a)),
        Command::Push(a) => image::run(&engine, ImageCommand::Push(a)),
        Command::Images(a) => image::run(&engine, ImageCommand::Ls(a)),
        Command::Rmi(a) => image::run(&engine, ImageCommand::Rm(a)),
        Command::Load(a) => image::run(&engine, ImageCommand::Load(a)),
        Command::Save(a) => image::run(&engine, ImageCommand::Save(a)),
        Command::Import(a) => image::run(&engine, ImageCommand::Import(a)),
        Command::Tag(a) => image::run(&engine, ImageCommand::Tag(a)),
        Command::Login(a) => image::login(&root, a),
        Command::Logout { registry } => image::logout(&root, &registry),
        Command::Version { json } => host::version(json),
        Command::Info { json } => host::info(&root, json),
        Command::System(cmd) => system::run(&engine, cmd),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "corral", &mut script);
            // `corral completion bash | head` ends quietly.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => Ok(r?),
            }
        }
        Command::Man { dir } => system::man_pages(&dir),
    }
}
