//! What the engine keeps of a container beyond the runtime's plan: `containers/<id>/engine.json`
//! — labels, the stop signal and timeout, the anonymous volumes it owns, the ports it asked
//! to publish.
//!
//! Written once, right after the container is created; a container without it (made before
//! the engine, or a crash between the two writes) reads as the defaults, so a missing or torn
//! record never makes a container unusable.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The engine's record of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Labels (the image's, then the spec's).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The signal `stop` sends first (a name such as `SIGQUIT`, or a number).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL.
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// Anonymous volumes made for it: removed with it by `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// Ports asked for (`-p` as given, and `-P`'s), for `port` and `ps`.
    #[serde(default)]
    pub publish: Vec<String>,
    /// `-P`.
    #[serde(default)]
    pub publish_all: bool,
    /// The networks asked for by name (`none`, `host`, or corral networks).
    #[serde(default)]
    pub networks: Vec<String>,
    /// The health check.
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthConfig>,
    /// More `/etc/hosts` lines: (name, address or `host-gateway`).
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// DNS servers instead of the network's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// The pod it belongs to (its id).
    #[serde(default)]
    pub pod: Option<String>,
    /// Namespaces of other containers it joins at each start: (kind, container id), kind one
    /// of `net`, `ipc`, `pid` (`--network/--ipc/--pid container:X`).
    #[serde(default)]
    pub shared: Vec<(String, String)>,
}

/// The record's file in a container's directory.
pub const FILE: &str = "engine.json";

impl Record {
    /// Reads the record in a container's directory; the defaults if it has none.
    pub fn load(dir: &Path) -> Record {
        std::fs::read(dir.join(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes it atomically (temporary file, rename). Not fsynced: it is on the start path,
    /// and a record lost to a power cut reads as the defaults.
    pub fn save(&self, dir: &Path) -> crate::Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body?)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(crate::io_err("writing", &path))
    }
}
