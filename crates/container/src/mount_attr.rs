//! Mount attributes set with `mount_setattr(2)`: the recursive mount options of the runtime
//! spec (`rro`, `rnosuid`, `rnoexec` ...), which `mount(2)` cannot apply to every mount of a
//! tree, and idmapping (see [`crate::userns`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_*` bits to set and to clear on a mount (and, recursively, its submounts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Bits to set.
    pub set: u64,
    /// Bits to clear.
    pub clear: u64,
}

const RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
const NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
const NODEV: u64 = libc::MOUNT_ATTR_NODEV;
const NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;
const ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;
const RELATIME: u64 = libc::MOUNT_ATTR_RELATIME;
const NOATIME: u64 = libc::MOUNT_ATTR_NOATIME;
const STRICTATIME: u64 = libc::MOUNT_ATTR_STRICTATIME;
const NODIRATIME: u64 = libc::MOUNT_ATTR_NODIRATIME;
const NOSYMFOLLOW: u64 = 0x0020_0000;

impl Attrs {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }

    /// Takes one mount option if it is a recursive one (`rro`, `rnoexec`, `ratime` ...), and
    /// says whether it was. The atime options replace the whole atime mode, as the kernel
    /// requires (`MOUNT_ATTR__ATIME` cleared, one mode set).
    pub fn take(&mut self, option: &str) -> bool {
        let (set, flag) = match option {
            "rro" => (true, RDONLY),
            "rrw" => (false, RDONLY),
            "rnosuid" => (true, NOSUID),
            "rsuid" => (false, NOSUID),
            "rnodev" => (true, NODEV),
            "rdev" => (false, NODEV),
            "rnoexec" => (true, NOEXEC),
            "rexec" => (false, NOEXEC),
            "rnodiratime" => (true, NODIRATIME),
            "rdiratime" => (false, NODIRATIME),
            "rnosymfollow" => (true, NOSYMFOLLOW),
            "rsymfollow" => (false, NOSYMFOLLOW),
            "rrelatime" | "rnorelatime" | "ratime" | "rnostrictatime" => {
                self.clear |= ATIME_MASK;
                self.set = (self.set & !ATIME_MASK) | RELATIME;
                return true;
            }
            "rnoatime" | "rstrictatime" => {
                self.clear |= ATIME_MASK;
                self.set = (self.set & !ATIME_MASK)
                    | if option == "rnoatime" {
                        NOATIME
                    } else {
                        STRICTATIME
                    };
                return true;
            }
            _ => return false,
        };
        if set {
            self.set |= flag;
            self.clear &= !flag;
        } else {
            self.clear |= flag;
            self.set &= !flag;
        }
        true
    }
}

/// The options [`Attrs::take`] knows, for `features`.
pub const OPTIONS: &[&str] = &[
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// Applies `attrs` to the mount open at `mount` and every mount beneath it, and idmaps it
/// through `userns` if given.
pub fn apply(
    mount: BorrowedFd<'_>,
    attrs: Attrs,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> io::Result<()> {
    let mut set = attrs.set;
    let mut userns_fd = 0u64;
    if let Some(ns) = userns {
        set |= libc::MOUNT_ATTR_IDMAP;
        userns_fd = u64::try_from(ns.as_raw_fd()).map_err(io::Error::other)?;
    }
    // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
    let attr: [u64; 4] = [set, attrs.clear, 0, userns_fd];
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: mount_setattr(2) reads `size_of_val(&attr)` bytes from a valid, live
    // `mount_attr`, and the path is an empty C string (AT_EMPTY_PATH on `mount`).
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_options_become_set_and_clear_bits() {
        let mut a = Attrs::default();
        assert!(a.take("rro") && a.take("rnosuid") && a.take("rnoatime"));
        assert!(!a.take("ro") && !a.take("nosuid"));
        assert_eq!(a.set, RDONLY | NOSUID | NOATIME);
        assert_eq!(a.clear, ATIME_MASK);
        assert!(a.take("rrw"));
        assert_eq!(a.set & RDONLY, 0);
        assert_eq!(a.clear & RDONLY, RDONLY);
        assert!(a.take("ratime"));
        assert_eq!(a.set & ATIME_MASK, RELATIME);
        for o in OPTIONS {
            assert!(Attrs::default().take(o), "{o}");
        }
    }
}
