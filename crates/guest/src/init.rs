//! PID 1: the kernel filesystems, the console, the modules, the agent's port.
//!
//! The initramfs holds `/corral/modules`, one absolute `.ko` path per line in load order
//! (dependencies first), written by corral's initramfs builder from `modules.dep`. Each is
//! loaded with finit_module(2); one already there (built in, or loaded) is fine, any other
//! failure is logged and the boot goes on: the port or a disk may still work without it.
//!
//! Nothing here returns: PID 1 exiting panics the kernel, so a fatal error (or a panic of
//! the request loop) is logged, the disks synced and the machine powered off.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_guest::proto::PORT_NAME;
use rustix::io::Errno;

use crate::boot::{mount_kernel_fs, power_off};
use crate::log;
use crate::server::Agent;

/// The list of modules to load, one absolute path per line.
const MODULES_LIST: &str = "/corral/modules";
/// How long to wait for the virtio-serial port to appear.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// Runs the agent as PID 1; never returns.
pub fn run() -> ! {
    console();
    log!("starting (protocol {})", corral_guest::proto::VERSION);
    if let Err(e) = mount_kernel_fs(Path::new("/")) {
        log!(
            "mounting the kernel filesystems: {}",
            crate::server::error_chain(&e)
        );
    }
    load_modules(Path::new(MODULES_LIST));
    let served = std::panic::catch_unwind(|| {
        let Some(port) = find_port(PORT_WAIT) else {
            log!("no virtio-serial port named {PORT_NAME} after {PORT_WAIT:?}: powering off");
            return;
        };
        serve_port(&port);
    });
    if served.is_err() {
        log!("the request loop panicked: powering off");
    }
    power_off(false)
}

/// Points stdout and stderr (and stdin) at /dev/console, mounting /dev first if needed.
fn console() {
    let _ = std::fs::create_dir_all("/dev");
    let _ = rustix::mount::mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        rustix::mount::MountFlags::NOSUID,
        None,
    );
    if let Ok(c) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        let _ = rustix::stdio::dup2_stdin(&c);
        let _ = rustix::stdio::dup2_stdout(&c);
        let _ = rustix::stdio::dup2_stderr(&c);
    }
}

/// Loads every module listed in `list`.
fn load_modules(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) => {
            log!("no module list {}: {e}", list.display());
            return;
        }
    };
    let start = Instant::now();
    let mut loaded = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f = match File::open(line) {
            Ok(f) => f,
            Err(e) => {
                log!("module {line}: {e}");
                continue;
            }
        };
        match rustix::system::finit_module(&f, c"", 0) {
            Ok(()) => loaded += 1,
            Err(Errno::EXIST) => {}
            Err(e) => log!("module {line}: {e}"),
        }
    }
    log!("loaded {loaded} modules in {:?}", start.elapsed());
}

/// The device of the virtio-serial port named [`PORT_NAME`], waiting up to `wait`.
fn find_port(wait: Duration) -> Option<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in dir.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim_end() == PORT_NAME {
                    let dev = Path::new("/dev").join(e.file_name());
                    if dev.exists() {
                        return Some(dev);
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves the protocol on the port forever.
///
/// A virtio-serial port reads end-of-file for as long as no host is connected to its
/// chardev; the agent then waits a little and reads again, starting a fresh stream (a new
/// connection starts on a frame boundary).
fn serve_port(port: &Path) {
    let f = match OpenOptions::new().read(true).write(true).open(port) {
        Ok(f) => f,
        Err(e) => {
            log!("open {}: {e}", port.display());
            return;
        }
    };
    let w = match f.try_clone() {
        Ok(w) => w,
        Err(e) => {
            log!("clone {}: {e}", port.display());
            return;
        }
    };
    log!("serving on {}", port.display());
    let agent = Arc::new(Agent::new(true));
    agent.out.attach(Box::new(w));
    loop {
        agent.serve(&f);
        std::thread::sleep(Duration::from_millis(50));
    }
}
