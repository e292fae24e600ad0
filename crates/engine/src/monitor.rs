//! The engine's part in a container's monitor (`corral __monitor`, `corral-monitor`): the
//! events of the container's life (`start`, `restart`, `die`, `oom`, `destroy`), and the
//! clean-up of what the engine made around an `--rm` container — its networks and its
//! anonymous volumes.

use std::path::{Path, PathBuf};

use corral_container::process::monitor::MonitorHooks;
use corral_container::State;

use crate::events::{Event, Journal};
use crate::record::Record;

/// The hooks of one state root.
struct Hooks {
    root: PathBuf,
    journal: Journal,
    record: std::cell::RefCell<Option<Record>>,
}

impl Hooks {
    fn event(&self, action: &str, s: &State) -> Event {
        let dir = self.root.join("containers").join(&s.id);
        event_of(action, s, &Record::load(&dir))
    }
}

fn event_of(action: &str, s: &State, r: &Record) -> Event {
    Event::new("container", action, &s.id)
        .attr("name", &s.name)
        .attr("image", &s.image)
        .labels(&r.labels)
}

impl MonitorHooks for Hooks {
    fn started(&self, s: &State) {
        let record = Record::load(&self.root.join("containers").join(&s.id));
        if s.restart_count > 0 {
            self.journal.record(&event_of("restart", s, &record));
        }
        self.journal.record(&event_of("start", s, &record));
        if let (Some(_), Some(pid)) = (&record.healthcheck, s.pid) {
            crate::health::spawn_checker(&self.root, &s.id, pid);
        }
    }

    fn exited(&self, s: &State) {
        if s.oom_killed {
            self.journal.record(&self.event("oom", s));
        }
        let code = s.exit_code.unwrap_or(-1).to_string();
        self.journal
            .record(&self.event("die", s).attr("exitCode", code));
    }

    fn removing(&self, s: &State) {
        let _ = corral_net::Networks::open(&self.root).release(&s.id);
        let dir = self.root.join("containers").join(&s.id);
        // Read while the container's directory is still there.
        *self.record.borrow_mut() = Some(Record::load(&dir));
        self.journal.record(&self.event("destroy", s));
    }

    fn removed(&self, _s: &State) {
        if let Some(r) = self.record.borrow_mut().take() {
            remove_anonymous_volumes(&self.root, &r);
        }
    }
}

/// Removes the anonymous volumes a container owned (they were made for it alone).
pub(crate) fn remove_anonymous_volumes(root: &Path, record: &Record) {
    if record.anonymous_volumes.is_empty() {
        return;
    }
    let (Ok(vols), Ok(cs)) = (
        corral_container::volumes::Volumes::open(root.join("volumes")),
        corral_container::Containers::open(root.join("containers")),
    ) else {
        return;
    };
    for v in &record.anonymous_volumes {
        if let Err(e) = vols.remove(v, &cs) {
            tracing::warn!(volume = %v, "removing an anonymous volume: {e}");
        }
    }
}

/// `corral __monitor CONTAINERS_DIR ID NOTIFY_FD CGROUP_ROOT [--attach] [--netns-fd N]`.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    // CORRAL_ROOT is the containers directory's parent.
    let root = args
        .first()
        .map(PathBuf::from)
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let hooks = Hooks {
        journal: Journal::new(&root),
        root,
        record: Default::default(),
    };
    corral_container::process::monitor::main_from_args(args, Some(&hooks))
}
