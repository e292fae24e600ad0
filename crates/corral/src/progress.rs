//! Progress bars on stderr for pulls and pushes, one per layer (hidden when stderr is not a
//! terminal).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws [`corral_image::progress::Progress`] events with indicatif.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars on stderr, or nothing if `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl corral_image::progress::Progress for Bars {
    fn begin(&self, id: &str, label: &str, total: Option<u64>) {
        let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {msg:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(id.to_owned());
        bar.set_message(label.to_owned());
        self.bars.lock().expect("lock").insert(id.to_owned(), bar);
    }

    fn advance(&self, id: &str, n: u64) {
        if let Some(b) = self.bars.lock().expect("lock").get(id) {
            b.inc(n);
        }
    }

    fn end(&self, id: &str, status: &str) {
        if let Some(b) = self.bars.lock().expect("lock").get(id) {
            b.set_message(status.to_owned());
            if status == "done" || status == "already exists" || status == "pushed" {
                b.finish();
            }
        }
    }
}
