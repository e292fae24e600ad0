//! Hostile rootfs tarballs: each tries to make the unpacker write outside the layer directory,
//! or create something a layer must not hold.
//!
//! The names are written into raw tar headers byte for byte ([`TarWriter::raw`]), because the
//! `tar` crate rightly refuses to build them. Every tarball also holds a harmless `ok` file, so
//! an unpacker that drops the bad entries still produces a layer with content.
//!
//! File names carry a caller-given token so that tests running in parallel (or a previous run)
//! cannot be confused for one another when the test looks for escaped files on the host.
//!
//! The classic attacks, as in CVE-2019-14271 / CVE-2018-15664 (docker cp), CVE-2021-30465
//! (runc symlink-exchange) and the many "zip slip" bugs: `../` paths, absolute paths, writing
//! through a symlink planted by an earlier entry, hard links to host files, device nodes.

use crate::tarball::{RawKind, TarWriter};

/// Content of the harmless `ok` file in every hostile tarball.
pub const OK_CONTENT: &[u8] = b"ok\n";

/// Content written through the hostile entries; seeing it anywhere outside a layer is a breach.
pub const PAYLOAD: &[u8] = b"corral-e2e hostile payload\n";

fn start() -> TarWriter {
    let mut tar = TarWriter::new();
    tar.file("ok", 0o644, OK_CONTENT);
    tar
}

/// Entries named `../../escape-<token>`, a deep `../…/escape-<token>` that would land at the
/// host's `/escape-<token>` from any depth, and an absolute `/abs-escape-<token>`.
pub fn dotdot_and_absolute(token: &str) -> Vec<u8> {
    let deep = format!("{}escape-{token}", "../".repeat(20));
    let mut tar = start();
    tar.raw(
        format!("../../escape-{token}").as_bytes(),
        RawKind::File,
        b"",
        PAYLOAD,
    )
    .raw(deep.as_bytes(), RawKind::File, b"", PAYLOAD)
    .raw(
        format!("/abs-escape-{token}").as_bytes(),
        RawKind::File,
        b"",
        PAYLOAD,
    )
    .raw(
        format!("./sub/../../escape2-{token}").as_bytes(),
        RawKind::File,
        b"",
        PAYLOAD,
    );
    tar.finish()
}

/// A symlink `link -> target`, then a regular file `link/through-symlink-<token>`: an unpacker
/// that follows the link writes into `target` (e.g. `/`, `../../../..`, a host directory).
pub fn symlink_then_file_through_it(target: &str, token: &str) -> Vec<u8> {
    let mut tar = start();
    tar.raw(b"link", RawKind::Symlink, target.as_bytes(), b"")
        .raw(
            format!("link/through-symlink-{token}").as_bytes(),
            RawKind::File,
            b"",
            PAYLOAD,
        );
    tar.finish()
}

/// A symlink `victim -> host_path`, then a regular file named `victim`: the file must replace
/// the link, not be written through it into `host_path`.
pub fn symlink_then_file_replacing_it(host_path: &str) -> Vec<u8> {
    let mut tar = start();
    tar.raw(b"victim", RawKind::Symlink, host_path.as_bytes(), b"")
        .raw(b"victim", RawKind::File, b"", PAYLOAD);
    tar.finish()
}

/// A hard link `hl -> target` (e.g. `/etc/passwd` or `../../../etc/passwd`): it must not
/// link to a host file.
pub fn hardlink_to(target: &str) -> Vec<u8> {
    let mut tar = start();
    tar.raw(b"hl", RawKind::Hardlink, target.as_bytes(), b"");
    tar.finish()
}

/// A hard link `hl -> host_path`, then a regular file `hl`: an unpacker that linked to the
/// host file and then opens `hl` for writing would overwrite the host file. Only ever point
/// this at a file the test owns.
pub fn hardlink_then_overwrite(host_path: &str) -> Vec<u8> {
    let mut tar = start();
    tar.raw(b"hl", RawKind::Hardlink, host_path.as_bytes(), b"")
        .raw(b"hl", RawKind::File, b"", PAYLOAD);
    tar.finish()
}

/// Device nodes and a FIFO: a char device `dev/sda-like` (8:0, a disk), a block device
/// `dev/loop-like` (7:0) and a FIFO `fifo`.
pub fn device_nodes() -> Vec<u8> {
    let mut tar = start();
    tar.raw(b"dev/", RawKind::Dir, b"", b"")
        .raw(b"dev/sda-like", RawKind::CharDevice(8, 0), b"", b"")
        .raw(b"dev/loop-like", RawKind::BlockDevice(7, 0), b"", b"")
        .raw(b"fifo", RawKind::Fifo, b"", b"");
    tar.finish()
}
