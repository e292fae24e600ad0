//! `corral-vm-monitor`: the per-VM monitor as an executable of its own (the same code as
//! `corral __vm-monitor`), linked without the registry client and the command line, so that
//! each running VM costs less memory beside its QEMU.

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(corral_vm::monitor::main_from_args(&args));
}
