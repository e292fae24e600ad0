//! A private containerd daemon (Debian's `containerd` 1.6) for tests: its own root, state and
//! socket in a temp dir, the CRI plugin off. `ctr` talks to it. Drop stops it by its pid and
//! removes what it left: mounts under its dirs, the cgroup directories of its namespace, the
//! temp dir.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::run_bounded;

/// A running containerd.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The namespace tests use (its name avoids "corral": cgroups are named after it).
    pub namespace: String,
}

impl Containerd {
    /// Starts containerd and waits (10 s at most) until `ctr version` answers.
    pub fn start() -> Self {
        let dir = crate::test_tempdir("containerd");
        let d = dir.path();
        let config = d.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
                d.join("root").display(),
                d.join("state").display(),
                d.join("containerd.sock").display()
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let namespace = format!("ctdtest{}", crate::unique_token());
        let c = Containerd {
            child,
            dir,
            namespace,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Runs `ctr -a SOCK -n NS ARGS`, bounded to 60 s.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let sock = self.dir.path().join("containerd.sock");
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(&sock)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        run_bounded(&mut cmd, None, Duration::from_secs(60))
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The temp dir holding everything of this daemon.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::mounts::unmount_all_under(self.dir.path());
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.namespace));
            }
        }
    }
}
