//! Rolling updates (`deploy.update_config`): a changed service's replicas replaced
//! `parallelism` at a time, each new replica gated on its health check (and, with `monitor`,
//! on staying up and healthy that long), `delay` between batches.
//!
//! The old replicas are parked (renamed `NAME-old-ID`) rather than removed until the whole
//! service has rolled over, so that `failure_action: rollback` can put every one of them back;
//! `pause` (the default) puts back only the failed batch and stops there; `continue` goes on.
//! `start-first` starts the new replica while the old one still serves, with its DNS names
//! held back; once the new one is healthy its names are published and the old one is
//! drained — its names taken out of DNS, a grace period for requests in flight — and
//! stopped, so clients that reach the service by name see no failed request.
//! The replicas share their published host ports (`plan`'s port group): a held replica takes
//! no new connection on them and a drained one none any more, so clients of a published port
//! see no failed request either. `stop-first` stops the old one first.

use std::time::{Duration, Instant};

use corral_engine::views::ContainerView;
use corral_engine::Engine;

use crate::model::{Project, Service};
use crate::ops::{self, Out};
use crate::plan;
use crate::up::{Report, UpOptions};
use crate::ComposeError;

/// How long a drained replica keeps serving what it already accepted.
const DRAIN: Duration = Duration::from_secs(1);

/// One replica being replaced: the old container (parked), its name, the new one.
struct Swap {
    old_id: String,
    old_name: String,
    was_running: bool,
    new_id: Option<String>,
}

fn has_check(s: &Service) -> bool {
    s.healthcheck
        .as_ref()
        .is_some_and(|h| !h.disable && h.test.first().map(String::as_str) != Some("NONE"))
}

/// Waits until container `id` runs (and is healthy when `healthy`), then, for `monitor`,
/// that it stays so.
fn settle(
    engine: &Engine,
    id: &str,
    healthy: bool,
    timeout: Duration,
    monitor: Duration,
) -> Result<(), ComposeError> {
    let cs = engine.containers().map_err(ComposeError::engine)?;
    let ok = || -> Result<bool, ComposeError> {
        let st = cs
            .load(id)
            .map_err(|e| ComposeError::Engine(e.to_string()))?;
        if st.status == corral_container::Status::Exited {
            return Err(ComposeError::Dependency(format!(
                "the new replica {} exited with code {}",
                st.name,
                st.exit_code.unwrap_or(-1)
            )));
        }
        let h = corral_engine::health::load(&cs.dir(id));
        if healthy && h.as_ref().is_some_and(|h| h.status == "unhealthy") {
            return Err(ComposeError::Dependency(format!(
                "the new replica {} is unhealthy",
                st.name
            )));
        }
        Ok(st.status == corral_container::Status::Running
            && (!healthy || h.is_some_and(|h| h.status == "healthy")))
    };
    let deadline = Instant::now() + timeout;
    while !ok()? {
        if Instant::now() >= deadline {
            return Err(ComposeError::Dependency(format!(
                "the new replica was not {} within {}s",
                if healthy { "healthy" } else { "running" },
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = Instant::now() + monitor;
    while Instant::now() < until {
        if !ok()? {
            return Err(ComposeError::Dependency(
                "the new replica did not stay up through monitor".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Puts parked replicas back and removes their successors.
fn undo(engine: &Engine, swaps: &[Swap], out: &dyn Out) {
    for sw in swaps.iter().rev() {
        if let Some(new) = &sw.new_id {
            let _ = engine.remove(new, true, true);
        }
        if let Err(e) = engine.rename(&sw.old_id, &sw.old_name) {
            out.warn(&format!("putting {} back: {e}", sw.old_name));
            continue;
        }
        let running = engine
            .containers()
            .ok()
            .and_then(|cs| cs.load(&sw.old_id).ok())
            .is_some_and(|st| st.status == corral_container::Status::Running);
        if sw.was_running && !running {
            if let Err(e) = engine.start(&sw.old_id, false) {
                out.warn(&format!("starting {} again: {e}", sw.old_name));
            }
        }
        out.line(&format!("Container {}  Rolled back", sw.old_name));
    }
}

/// Replaces `replace` (replica number, old container) by new replicas of `s`.
#[allow(clippy::too_many_arguments)]
pub fn update(
    engine: &Engine,
    p: &Project,
    s: &Service,
    hash: &str,
    o: &UpOptions,
    replace: &[(u32, &ContainerView)],
    out: &dyn Out,
    report: &mut Report,
) -> Result<(), ComposeError> {
    let u = s
        .update
        .clone()
        .expect("a rolling update has update_config");
    let start_first = u.order == "start-first";
    let healthy = has_check(s);
    let monitor = Duration::from_secs_f64(u.monitor);
    let mut done: Vec<Swap> = Vec::new();
    for (i, batch) in replace.chunks(u.parallelism as usize).enumerate() {
        if i > 0 && u.delay > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(u.delay));
        }
        let mut swaps: Vec<Swap> = Vec::new();
        let mut failure: Option<ComposeError> = None;
        for (n, c) in batch {
            let parked = format!(
                "{}-old-{}",
                c.state.name,
                &c.state.id[..8.min(c.state.id.len())]
            );
            let was_running = c.state.status == corral_container::Status::Running;
            if let Err(e) = engine.rename(&c.state.id, &parked) {
                failure = Some(ComposeError::engine(e));
                break;
            }
            let mut sw = Swap {
                old_id: c.state.id.clone(),
                old_name: c.state.name.clone(),
                was_running,
                new_id: None,
            };
            if !start_first && was_running {
                let _ = engine.withdraw_names(&c.state.id);
                if let Err(e) = engine.stop(&c.state.id, None) {
                    swaps.push(sw);
                    failure = Some(ComposeError::engine(e));
                    break;
                }
            }
            let mut spec =
                plan::container_spec_in(p, s, *n, hash, &o.labels, o.files_dir.as_deref())?;
            // Beside a serving old replica, the new one takes no traffic by name until it is
            // healthy.
            spec.dns_hold = start_first;
            match ops::create_and_start(engine, &spec) {
                Ok(id) => sw.new_id = Some(id),
                Err(e) => failure = Some(e),
            }
            swaps.push(sw);
            if failure.is_some() {
                break;
            }
        }
        if failure.is_none() {
            for sw in &swaps {
                if let Err(e) = settle(
                    engine,
                    sw.new_id.as_deref().unwrap_or(""),
                    healthy,
                    o.timeout,
                    monitor,
                ) {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let e = ComposeError::Dependency(format!("rolling update of service {}: {e}", s.name));
            match u.failure_action.as_str() {
                "continue" => out.warn(&format!("{e}; going on (failure_action: continue)")),
                "rollback" => {
                    swaps.extend(done);
                    undo(engine, &swaps, out);
                    return Err(e);
                }
                _ => {
                    undo(engine, &swaps, out);
                    finish(engine, &done, out, report)?;
                    return Err(ComposeError::Dependency(format!(
                        "{e}; the update is paused there (failure_action: pause)"
                    )));
                }
            }
        }
        // The new ones serve: drain the old ones (start-first) and stop them, kept parked.
        if start_first {
            for sw in &swaps {
                if let Some(id) = &sw.new_id {
                    engine.publish_names(id).map_err(ComposeError::engine)?;
                }
            }
            for sw in swaps.iter().filter(|sw| sw.was_running) {
                let _ = engine.withdraw_names(&sw.old_id);
            }
            std::thread::sleep(DRAIN);
            for sw in swaps.iter().filter(|sw| sw.was_running) {
                let _ = engine.stop(&sw.old_id, None);
            }
        }
        for sw in &swaps {
            out.line(&format!("Container {}  Updated", sw.old_name));
        }
        done.extend(swaps);
    }
    finish(engine, &done, out, report)
}

/// Removes the parked old replicas of a finished rollover.
fn finish(
    engine: &Engine,
    done: &[Swap],
    out: &dyn Out,
    report: &mut Report,
) -> Result<(), ComposeError> {
    let _ = out;
    for sw in done {
        engine
            .remove(&sw.old_id, true, false)
            .map_err(|e| ComposeError::Engine(format!("removing the old {}: {e}", sw.old_name)))?;
        report.push((sw.old_name.clone(), "Recreated"));
    }
    Ok(())
}
