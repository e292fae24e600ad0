//! The initramfs corral boots guests with: corral's static guest agent as `/init`, and the
//! kernel modules the guest needs to reach its devices.
//!
//! ```text
//! /init                          the agent (corral-guest, static), PID 1
//! /corral/modules                the modules to load, one absolute path per line, in order
//! /lib/modules/<version>/...     those modules, at their place in the kernel's tree
//! /dev /proc /sys /run /tmp /root  empty mount points
//! ```
//!
//! No `/dev/console` is needed: the kernel unpacks its built-in initramfs
//! (`usr/default_cpio_list`: `/dev`, `/dev/console`, `/root`) before this one, so `/init` starts
//! with the console open on fds 0-2.
//!
//! The archive is an uncompressed newc cpio ([`crate::cpio`]): measured under TCG with Debian's
//! 6.1 cloud kernel, unpacking 5.2 MB took 40 ms of guest time uncompressed and 80 ms as gzip
//! (1.3 MB), 1.7 MB 20-35 ms against 50 ms; the time to `/init` did not differ beyond noise,
//! so gzip buys nothing but build time. It is built once per (kernel version, agent bytes, module files) and
//! cached under a name derived from their hash; it is written to a temporary file and renamed,
//! so concurrent builders agree and a crash leaves no torn file. Stale entries of older agents
//! stay until the cache is cleaned.
//!
//! Modules compressed with zstd or gzip are decompressed into the archive (the agent loads
//! them with plain `finit_module`); xz ones are refused.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corral_image::digest::Hasher;
use corral_image::Digest;

use crate::cpio::{CpioError, CpioWriter};
use crate::kernel::{GuestKernel, KernelError};

/// The modules a guest loads, by name (dependencies are added): the virtio transports and
/// devices corral attaches, and overlay for the container root. Those built into a kernel
/// (ext4 in Debian's) are skipped.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_balloon",
    "virtio_rng",
    "overlay",
    "ext4",
];

/// The modules a pod's VM loads beyond [`GUEST_MODULES`]: virtio-fs, for the share that holds
/// its members' roots.
pub const SANDBOX_MODULES: &[&str] = &["virtiofs"];

/// Environment variable naming the guest agent binary, overriding the search.
pub const AGENT_ENV: &str = "CORRAL_GUEST_AGENT";
/// File name of the guest agent.
pub const AGENT_NAME: &str = "corral-guest";
/// Where the agent reads its module list in the guest.
pub const MODULES_LIST: &str = "corral/modules";

/// Bump when the archive's layout changes, so old cache entries are not reused.
const FORMAT: &str = "corral-initramfs v1";

/// Errors building the initramfs or finding the agent.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The guest agent was not found.
    #[error("guest agent {AGENT_NAME} not found (looked at {looked}): build it with scripts/build-guest.sh, or set {AGENT_ENV}")]
    AgentNotFound {
        /// The paths tried.
        looked: String,
    },
    /// The agent is not a static x86-64 executable.
    #[error("guest agent {path} {why}: build it static with scripts/build-guest.sh")]
    AgentNotStatic {
        /// The binary.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The kernel's modules could not be resolved.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A module compressed in a format corral does not decompress.
    #[error("module {0} is compressed with xz, which corral does not decompress: use a kernel with uncompressed or zstd modules")]
    UnsupportedCompression(PathBuf),
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing initramfs {path}")]
    Cpio {
        /// The archive being written.
        path: PathBuf,
        /// The cause.
        #[source]
        err: CpioError,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InitramfsError + 'a {
    move |err| InitramfsError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Builds (or finds in `cache_dir`) the initramfs for `kernel` with `agent` as `/init` and
/// the modules of [`GUEST_MODULES`]; returns its path.
pub fn build_initramfs(
    cache_dir: &Path,
    kernel: &GuestKernel,
    agent: &Path,
) -> Result<PathBuf, InitramfsError> {
    build_initramfs_with(cache_dir, kernel, agent, &[])
}

/// As [`build_initramfs`], with the modules of `extra` too (a sandbox VM's
/// [`SANDBOX_MODULES`]).
pub fn build_initramfs_with(
    cache_dir: &Path,
    kernel: &GuestKernel,
    agent: &Path,
    extra: &[&str],
) -> Result<PathBuf, InitramfsError> {
    check_static(agent)?;
    let wanted: Vec<&str> = GUEST_MODULES.iter().chain(extra).copied().collect();
    let modules = kernel.modules_for(&wanted)?;
    for m in &modules {
        if m.extension().is_some_and(|e| e == "xz") {
            return Err(InitramfsError::UnsupportedCompression(m.clone()));
        }
    }

    let mut key = Hasher::default();
    key.update(FORMAT.as_bytes());
    key.update(b"\0");
    key.update(kernel.version.as_bytes());
    key.update(b"\0");
    key.update(agent_digest(cache_dir, agent)?.hex().as_bytes());
    for m in &modules {
        let meta = fs::metadata(m).map_err(io_err("reading", m))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        key.update(m.as_os_str().as_encoded_bytes());
        key.update(format!("\0{}\0{mtime}\0", meta.len()).as_bytes());
    }
    let digest = key.finish();
    let out = cache_dir.join(format!("initramfs-{}.cpio", &digest.hex()[..32]));
    if out.is_file() {
        return Ok(out);
    }

    fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let tmp = cache_dir.join(format!(
        ".initramfs-{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let res = write_archive(&tmp, kernel, agent, &modules).and_then(|()| {
        fs::rename(&tmp, &out).map_err(io_err("renaming into place", &out))?;
        File::open(cache_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", cache_dir))
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    tracing::debug!(path = %out.display(), modules = modules.len(), "built initramfs");
    Ok(out)
}

/// The sha256 of the agent's bytes, remembered in `cache_dir/agent-<identity>` where identity
/// hashes the file's device, inode, size, mtime and ctime (which no one can set back), so that
/// a cached build costs a few `stat`s rather than reading the agent.
fn agent_digest(cache_dir: &Path, agent: &Path) -> Result<Digest, InitramfsError> {
    let meta = fs::metadata(agent).map_err(io_err("reading", agent))?;
    let identity = Digest::of(
        format!(
            "{}\0{}\0{}\0{}\0{}.{}\0{}.{}",
            agent.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
        .as_bytes(),
    );
    let memo = cache_dir.join(format!("agent-{}", &identity.hex()[..32]));
    if let Some(d) = fs::read_to_string(&memo)
        .ok()
        .and_then(|s| Digest::from_hex(s.trim()).ok())
    {
        return Ok(d);
    }
    let mut hasher = Hasher::default();
    let mut f = File::open(agent).map_err(io_err("opening", agent))?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", agent))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finish();
    // Best effort: without the memo the next call hashes again.
    fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let tmp = cache_dir.join(format!(
        ".agent-{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if fs::write(&tmp, digest.hex())
        .and_then(|()| fs::rename(&tmp, &memo))
        .is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
    Ok(digest)
}

fn write_archive(
    tmp: &Path,
    kernel: &GuestKernel,
    agent: &Path,
    modules: &[PathBuf],
) -> Result<(), InitramfsError> {
    let cpio_err = |err| InitramfsError::Cpio {
        path: tmp.to_owned(),
        err,
    };
    let file = File::create(tmp).map_err(io_err("creating", tmp))?;
    let mut w = CpioWriter::new(BufWriter::with_capacity(256 << 10, file));
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("corral", 0o755),
    ] {
        w.dir(dir, mode).map_err(cpio_err)?;
    }
    w.file_from("init", 0o755, agent).map_err(cpio_err)?;

    let mut list = String::new();
    for m in modules {
        let rel = m.strip_prefix(&kernel.modules).unwrap_or(m);
        let rel = rel.to_string_lossy();
        let rel = rel.trim_start_matches('/');
        let (rel, data) = if let Some(plain) = rel.strip_suffix(".zst") {
            let f = File::open(m).map_err(io_err("opening", m))?;
            (
                plain,
                Some(zstd::decode_all(f).map_err(io_err("decompressing", m))?),
            )
        } else if let Some(plain) = rel.strip_suffix(".gz") {
            let f = File::open(m).map_err(io_err("opening", m))?;
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(f)
                .read_to_end(&mut v)
                .map_err(io_err("decompressing", m))?;
            (plain, Some(v))
        } else {
            (rel, None)
        };
        let at = format!("lib/modules/{}/{rel}", kernel.version);
        match data {
            Some(d) => w.file(&at, 0o644, &d),
            None => w.file_from(&at, 0o644, m),
        }
        .map_err(cpio_err)?;
        list.push('/');
        list.push_str(&at);
        list.push('\n');
    }
    w.file(MODULES_LIST, 0o644, list.as_bytes())
        .map_err(cpio_err)?;
    let out = w.finish().map_err(cpio_err)?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("writing", tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err("syncing", tmp))
}

/// Finds the static guest agent: `$CORRAL_GUEST_AGENT`, else `corral-guest` next to the
/// running executable, else in the cargo target directory of a development build.
pub fn agent_path() -> Result<PathBuf, InitramfsError> {
    let exe = std::env::current_exe().map_err(io_err("finding", Path::new("/proc/self/exe")))?;
    agent_path_from(std::env::var_os(AGENT_ENV), &exe)
}

/// As [`agent_path`], with the environment variable's value and the executable as parameters.
pub fn agent_path_from(env: Option<OsString>, exe: &Path) -> Result<PathBuf, InitramfsError> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(InitramfsError::AgentNotFound {
                looked: format!("{} (from {AGENT_ENV})", p.display()),
            });
        }
        check_static(&p)?;
        return Ok(p);
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    let target = Path::new("x86_64-unknown-linux-gnu/release").join(AGENT_NAME);
    // Installed next to corral; target/release/corral; target/release/deps/<test>.
    let candidates = [
        dir.join(AGENT_NAME),
        dir.join("..").join(&target),
        dir.join("../..").join(&target),
    ];
    // A development tree has both: the workspace's own build of the agent beside corral
    // (dynamically linked, unusable as init) and the static one under the target triple. The
    // first static one wins; a dynamic one is reported only if no static one is found.
    let mut first_err = None;
    for c in &candidates {
        if c.is_file() {
            match check_static(c) {
                Ok(()) => return Ok(c.clone()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Err(InitramfsError::AgentNotFound {
        looked: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Checks that `path` is an x86-64 ELF executable without a program interpreter (`PT_INTERP`),
/// i.e. statically linked, so it runs as `/init` with no libc in the initramfs.
pub fn check_static(path: &Path) -> Result<(), InitramfsError> {
    let bad = |why| InitramfsError::AgentNotStatic {
        path: path.to_owned(),
        why,
    };
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    // The ELF-64 header (System V gABI, "ELF Header").
    let mut h = [0u8; 64];
    f.read_exact(&mut h)
        .map_err(|_| bad("is too short to be an ELF executable"))?;
    if &h[..4] != b"\x7fELF" {
        return Err(bad("is not an ELF file"));
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian, e_machine 62 = EM_X86_64.
    if h[4] != 2 || h[5] != 1 || u16::from_le_bytes([h[18], h[19]]) != 62 {
        return Err(bad("is not an x86-64 ELF"));
    }
    // e_type: 2 = ET_EXEC, 3 = ET_DYN (static-pie is ET_DYN without PT_INTERP).
    let e_type = u16::from_le_bytes([h[16], h[17]]);
    if e_type != 2 && e_type != 3 {
        return Err(bad("is not an executable"));
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes"));
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as usize;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as usize;
    if phentsize < 56 || phnum == 0 {
        return Err(bad("has no program headers"));
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut ph))
        .map_err(|_| bad("has truncated program headers"))?;
    // p_type is the first 4 bytes of each Elf64_Phdr; PT_INTERP = 3.
    let interp = ph
        .chunks_exact(phentsize)
        .any(|p| u32::from_le_bytes(p[..4].try_into().expect("4 bytes")) == 3);
    if interp {
        return Err(bad(
            "is dynamically linked (it has a PT_INTERP program header)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_are_refused() {
        // /bin/sh is dynamically linked on every Debian.
        let err = check_static(Path::new("/bin/sh")).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        assert!(err.to_string().contains("scripts/build-guest.sh"));
        let t = tempfile::tempdir().unwrap();
        let txt = t.path().join("x");
        fs::write(&txt, b"#!/bin/sh\n").unwrap();
        assert!(check_static(&txt).is_err());
    }

    #[test]
    fn busybox_static_is_static() {
        if !Path::new("/bin/busybox").is_file() {
            eprintln!("SKIPPED: busybox_static_is_static: no /bin/busybox (apt-get install busybox-static)");
            return;
        }
        check_static(Path::new("/bin/busybox")).unwrap();
    }

    #[test]
    fn agent_search_names_the_build_script() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("target/release/deps/disks-123");
        fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let err = agent_path_from(None, &exe).unwrap_err();
        assert!(err.to_string().contains("scripts/build-guest.sh"), "{err}");
        let err = agent_path_from(Some(t.path().join("nope").into()), &exe).unwrap_err();
        assert!(err.to_string().contains(AGENT_ENV), "{err}");
        // The dev layout: target/x86_64-unknown-linux-gnu/release/corral-guest.
        if Path::new("/bin/busybox").is_file() {
            let at = t.path().join("target/x86_64-unknown-linux-gnu/release");
            fs::create_dir_all(&at).unwrap();
            fs::copy("/bin/busybox", at.join(AGENT_NAME)).unwrap();
            let found = agent_path_from(None, &exe).unwrap();
            assert_eq!(found.canonicalize().unwrap(), at.join(AGENT_NAME));
        }
    }
}
