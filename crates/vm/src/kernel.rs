//! Guest kernels: which distribution kernel a VM boots, and which of its modules the guest
//! agent must load.
//!
//! corral boots the host distribution's kernel package (on Debian, `linux-image-cloud-amd64`:
//! `/boot/vmlinuz-<version>` and `/lib/modules/<version>`), not a kernel of its own. The
//! drivers a guest needs (virtio, overlay ...) are modules there, so the initramfs carries
//! them, in an order the agent can load one by one: [`GuestKernel::modules_for`] resolves
//! names through `modules.dep` (the file `depmod` writes; each line `module: deps...`, paths
//! relative to the modules directory) into dependencies before dependents, and skips what
//! `modules.builtin` says is compiled in.
//!
//! Limits: x86-64 bzImage kernels named `vmlinuz-<version>`; modules compressed with xz are
//! refused by the initramfs builder (zstd and gzip ones are decompressed).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where distribution kernels are installed.
pub const BOOT_DIR: &str = "/boot";
/// Where their modules are installed, one directory per version.
pub const MODULES_ROOT: &str = "/lib/modules";

/// Errors finding a kernel or resolving its modules.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No kernel was found in the boot directory.
    #[error(
        "no guest kernel found in {0}: install one with `apt-get install linux-image-cloud-amd64`, \
         or name one explicitly"
    )]
    NotFound(PathBuf),
    /// An explicit kernel path that does not exist or is not a file.
    #[error("guest kernel {path} is not a readable file")]
    Missing {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A kernel whose file name is not `vmlinuz-<version>`, so its modules cannot be found.
    #[error("cannot tell the version of kernel {0}: its file name must be vmlinuz-<version>")]
    NoVersion(PathBuf),
    /// The kernel's modules directory is absent.
    #[error(
        "modules of kernel {version} not found in {dir}: install the package that provides \
         this kernel (on Debian, linux-image-{version})"
    )]
    NoModules {
        /// The kernel version.
        version: String,
        /// The directory looked for.
        dir: PathBuf,
    },
    /// Reading `modules.dep` or `modules.builtin` failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A module named by the caller that the kernel neither has nor builds in.
    #[error("kernel {version} has no module {name} (not in modules.dep nor modules.builtin)")]
    UnknownModule {
        /// The kernel version.
        version: String,
        /// The module name asked for.
        name: String,
    },
    /// A dependency cycle in `modules.dep` (depmod never writes one).
    #[error("modules.dep of kernel {version} has a dependency cycle through {module}")]
    Cycle {
        /// The kernel version.
        version: String,
        /// A module on the cycle.
        module: String,
    },
}

/// A guest kernel: the image QEMU boots and the modules that belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// The kernel release, `uname -r` in the guest (e.g. `6.1.0-56-cloud-amd64`).
    pub version: String,
    /// The kernel image (`vmlinuz-<version>`).
    pub kernel: PathBuf,
    /// Its modules directory (`/lib/modules/<version>`); it may be absent, which is an error
    /// only once modules are asked for.
    pub modules: PathBuf,
}

impl GuestKernel {
    /// Finds the guest kernel in `/boot` and `/lib/modules`: `explicit` if given (its version
    /// taken from its file name), else the newest `vmlinuz-*-cloud-amd64`, else the newest
    /// `vmlinuz-*`.
    pub fn find(explicit: Option<&Path>) -> Result<Self, KernelError> {
        Self::find_in(Path::new(BOOT_DIR), Path::new(MODULES_ROOT), explicit)
    }

    /// As [`GuestKernel::find`], with the boot directory and modules root as parameters.
    pub fn find_in(
        boot: &Path,
        modules_root: &Path,
        explicit: Option<&Path>,
    ) -> Result<Self, KernelError> {
        let kernel = match explicit {
            Some(p) => {
                let meta = fs::metadata(p).map_err(|err| KernelError::Missing {
                    path: p.to_owned(),
                    err,
                })?;
                if !meta.is_file() {
                    return Err(KernelError::Missing {
                        path: p.to_owned(),
                        err: io::Error::other("not a regular file"),
                    });
                }
                p.to_owned()
            }
            None => newest_kernel(boot)?,
        };
        let version = kernel
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| KernelError::NoVersion(kernel.clone()))?
            .to_owned();
        Ok(GuestKernel {
            modules: modules_root.join(&version),
            version,
            kernel,
        })
    }

    /// The module files to load for `names`, with every dependency, dependencies before
    /// dependents, each once. Names compare with `-` and `_` as equal (`virtio-rng` is
    /// `virtio_rng`); modules built into the kernel are skipped; unknown names are errors.
    pub fn modules_for(&self, names: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        if !self.modules.is_dir() {
            return Err(KernelError::NoModules {
                version: self.version.clone(),
                dir: self.modules.clone(),
            });
        }
        let dep = self.read("modules.dep")?;
        let deps = parse_modules_dep(&dep);
        // modules.builtin may be absent on kernels built without modules.
        let builtin: BTreeSet<String> =
            match fs::read_to_string(self.modules.join("modules.builtin")) {
                Ok(s) => s.lines().filter_map(module_name).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
                Err(err) => {
                    return Err(KernelError::Read {
                        path: self.modules.join("modules.builtin"),
                        err,
                    })
                }
            };
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in names {
            let key = name.replace('-', "_");
            if deps.contains_key(&key) {
                self.visit(&key, &deps, &mut done, &mut BTreeSet::new(), &mut order)?;
            } else if !builtin.contains(&key) {
                return Err(KernelError::UnknownModule {
                    version: self.version.clone(),
                    name: (*name).to_owned(),
                });
            }
        }
        Ok(order
            .into_iter()
            .map(|rel: &str| self.modules.join(rel))
            .collect())
    }

    /// Depth-first, dependencies first: post-order of the dependency graph.
    fn visit<'a>(
        &self,
        name: &str,
        deps: &BTreeMap<String, (&'a str, Vec<&'a str>)>,
        done: &mut BTreeSet<String>,
        on_path: &mut BTreeSet<String>,
        order: &mut Vec<&'a str>,
    ) -> Result<(), KernelError> {
        if done.contains(name) {
            return Ok(());
        }
        if !on_path.insert(name.to_owned()) {
            return Err(KernelError::Cycle {
                version: self.version.clone(),
                module: name.to_owned(),
            });
        }
        let Some((path, requires)) = deps.get(name) else {
            return Ok(());
        };
        // modprobe loads a line's dependencies from the last to the first; recursing into
        // each keeps that order and does not rely on it.
        for dep in requires.iter().rev() {
            let Some(dep_name) = module_name(dep) else {
                continue;
            };
            if deps.contains_key(&dep_name) {
                self.visit(&dep_name, deps, done, on_path, order)?;
            } else if done.insert(dep_name) {
                // depmod writes a line for every module; without one, load it as listed.
                order.push(dep);
            }
        }
        on_path.remove(name);
        done.insert(name.to_owned());
        order.push(path);
        Ok(())
    }

    fn read(&self, file: &str) -> Result<String, KernelError> {
        let path = self.modules.join(file);
        fs::read_to_string(&path).map_err(|err| KernelError::Read { path, err })
    }
}

/// `modules.dep` as module name -> (its path, the paths it needs).
fn parse_modules_dep(s: &str) -> BTreeMap<String, (&str, Vec<&str>)> {
    s.lines()
        .filter_map(|line| {
            let (path, rest) = line.split_once(':')?;
            let path = path.trim();
            Some((
                module_name(path)?,
                (path, rest.split_whitespace().collect()),
            ))
        })
        .collect()
}

/// The module name of a module path: `kernel/drivers/char/hw_random/virtio-rng.ko.zst` is
/// `virtio_rng`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// The newest `vmlinuz-*-cloud-amd64` in `boot`, else the newest `vmlinuz-*`.
fn newest_kernel(boot: &Path) -> Result<PathBuf, KernelError> {
    let entries = match fs::read_dir(boot) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KernelError::NotFound(boot.to_owned()))
        }
        Err(err) => {
            return Err(KernelError::Read {
                path: boot.to_owned(),
                err,
            })
        }
    };
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let v = name.strip_prefix("vmlinuz-")?;
            (!v.is_empty()).then(|| v.to_owned())
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let cloud = versions.iter().rev().find(|v| v.ends_with("-cloud-amd64"));
    let pick = cloud
        .or(versions.last())
        .ok_or_else(|| KernelError::NotFound(boot.to_owned()))?;
    Ok(boot.join(format!("vmlinuz-{pick}")))
}

/// Compares versions as `sort -V` roughly does: runs of digits by value, the rest by bytes.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|c| **c == b'0').count();
    &d[z..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(boot: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("boot")).unwrap();
        for k in boot {
            fs::write(t.path().join("boot").join(k), b"k").unwrap();
        }
        let m = t.path().join("modules/6.1.0-9-cloud-amd64");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/a/virtio.ko: kernel/a/virtio_ring.ko\n\
             kernel/a/virtio_ring.ko:\n\
             kernel/a/virtio_net.ko: kernel/b/net_failover.ko kernel/c/failover.ko kernel/a/virtio.ko kernel/a/virtio_ring.ko\n\
             kernel/b/net_failover.ko: kernel/c/failover.ko\n\
             kernel/c/failover.ko:\n\
             kernel/d/virtio-rng.ko.zst: kernel/a/virtio.ko kernel/a/virtio_ring.ko\n",
        )
        .unwrap();
        fs::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        t
    }

    #[test]
    fn newest_cloud_kernel_is_preferred() {
        let t = fake(&[
            "vmlinuz-6.1.0-9-cloud-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "vmlinuz-6.1.0-8-cloud-amd64",
            "config-6.1.0-9-cloud-amd64",
        ]);
        let k =
            GuestKernel::find_in(&t.path().join("boot"), &t.path().join("modules"), None).unwrap();
        assert_eq!(k.version, "6.1.0-9-cloud-amd64");
        assert_eq!(k.modules, t.path().join("modules/6.1.0-9-cloud-amd64"));
        let t = fake(&["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64"]);
        let k =
            GuestKernel::find_in(&t.path().join("boot"), &t.path().join("modules"), None).unwrap();
        assert_eq!(k.version, "6.1.0-10-amd64");
    }

    #[test]
    fn no_kernel_names_the_package() {
        let t = fake(&[]);
        let err =
            GuestKernel::find_in(&t.path().join("boot"), &t.path().join("m"), None).unwrap_err();
        assert!(err
            .to_string()
            .contains("apt-get install linux-image-cloud-amd64"));
    }

    #[test]
    fn explicit_kernel_without_modules_fails_only_when_modules_are_needed() {
        let t = fake(&[]);
        let k = t.path().join("vmlinuz-9.9-test");
        fs::write(&k, b"k").unwrap();
        let k = GuestKernel::find_in(
            Path::new("/nonexistent"),
            &t.path().join("modules"),
            Some(&k),
        )
        .unwrap();
        assert_eq!(k.version, "9.9-test");
        assert!(k.modules_for(&[]).unwrap().is_empty());
        assert!(matches!(
            k.modules_for(&["virtio"]),
            Err(KernelError::NoModules { .. })
        ));
        let other = t.path().join("bzImage");
        fs::write(&other, b"k").unwrap();
        assert!(matches!(
            GuestKernel::find_in(t.path(), t.path(), Some(&other)),
            Err(KernelError::NoVersion(_))
        ));
    }

    #[test]
    fn modules_come_dependencies_first_builtins_skipped() {
        let t = fake(&["vmlinuz-6.1.0-9-cloud-amd64"]);
        let k =
            GuestKernel::find_in(&t.path().join("boot"), &t.path().join("modules"), None).unwrap();
        let got = k
            .modules_for(&["virtio_net", "ext4", "virtio-rng", "virtio"])
            .unwrap();
        let rel: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(&k.modules).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "kernel/a/virtio_ring.ko",
                "kernel/a/virtio.ko",
                "kernel/c/failover.ko",
                "kernel/b/net_failover.ko",
                "kernel/a/virtio_net.ko",
                "kernel/d/virtio-rng.ko.zst",
            ]
        );
        assert!(matches!(
            k.modules_for(&["nosuch"]),
            Err(KernelError::UnknownModule { .. })
        ));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_cmp("6.1.0-10", "6.1.0-9"), Ordering::Greater);
        assert_eq!(version_cmp("6.10", "6.9"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Ordering::Equal);
        assert_eq!(version_cmp("6.1", "6.1.0"), Ordering::Less);
    }
}
