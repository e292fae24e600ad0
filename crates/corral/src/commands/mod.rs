//! One module per group of verbs: each turns parsed flags into library calls and prints the
//! result.

pub mod container;
mod host;
mod image;
pub mod network;
pub mod vm;
mod volume;

use anyhow::Result;

use crate::cli::{Cli, Command, ImageCommand};

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let root = cli.root;
    match cli.command {
        Command::Run(a) => container::run(&root, a, true),
        Command::Create(a) => container::run(&root, a, false),
        Command::Start {
            attach,
            container: c,
        } => container::start(&root, &c, attach),
        Command::Ps { all, quiet, json } => container::ps(&root, all, quiet, json),
        Command::Exec {
            interactive,
            tty,
            detach,
            env,
            workdir,
            user,
            container: c,
            command,
        } => container::exec(
            &root,
            &c,
            container::ExecFlags {
                interactive,
                tty,
                detach,
                env,
                workdir,
                user,
            },
            command,
        ),
        Command::Logs {
            follow,
            tail,
            timestamps,
            container: c,
        } => container::logs(&root, &c, follow, tail, timestamps),
        Command::Stop { time, containers } => container::stop(&root, &containers, time),
        Command::Cp {
            source,
            destination,
        } => container::cp(&root, &source, &destination),
        Command::Pause { containers } => container::pause(&root, &containers, true),
        Command::Unpause { containers } => container::pause(&root, &containers, false),
        Command::Stats {
            no_stream,
            json,
            containers,
        } => container::stats(&root, &containers, no_stream || json, json),
        Command::Top { container: c, json } => container::top(&root, &c, json),
        Command::Kill { signal, containers } => container::kill(&root, &containers, &signal),
        Command::Rm { force, containers } => container::rm(&root, &containers, force),
        Command::Wait { containers } => container::wait(&root, &containers),
        Command::Inspect { targets } => container::inspect(&root, &targets),
        Command::Volume(cmd) => volume::run(&root, cmd),
        Command::Network(cmd) => network::run(&root, cmd),
        Command::Vm(cmd) => vm::run(&root, cmd),
        Command::Image(cmd) => image::run(&root, cmd),
        Command::Pull(a) => image::run(&root, ImageCommand::Pull(a)),
        Command::Push(a) => image::run(&root, ImageCommand::Push(a)),
        Command::Images(a) => image::run(&root, ImageCommand::Ls(a)),
        Command::Rmi(a) => image::run(&root, ImageCommand::Rm(a)),
        Command::Load(a) => image::run(&root, ImageCommand::Load(a)),
        Command::Save(a) => image::run(&root, ImageCommand::Save(a)),
        Command::Import(a) => image::run(&root, ImageCommand::Import(a)),
        Command::Tag(a) => image::run(&root, ImageCommand::Tag(a)),
        Command::Login(a) => image::login(&root, a),
        Command::Logout { registry } => image::logout(&root, &registry),
        Command::Version { json } => host::version(json),
        Command::Info { json } => host::info(&root, json),
    }
}
