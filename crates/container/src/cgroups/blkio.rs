//! The block I/O controller (v1 `blkio`, v2 `io`): weights and throttles. The weight file is
//! the scheduler's: `blkio.weight` under CFQ, `blkio.bfq.weight` under BFQ (v2: `io.weight`,
//! `io.bfq.weight`); a host with neither has no proportional I/O, and a weight is refused.

use std::path::Path;

use super::{refuse, write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Blkio;

impl CgroupController for Blkio {
    const NAME: &'static str = "blkio";

    fn needed(r: &Resources) -> bool {
        r.blkio.is_some()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        let Some(b) = &r.blkio else { return Ok(()) };
        let first = |files: &[&'static str]| files.iter().copied().find(|f| dir.join(f).exists());
        let weight_file = match layout {
            Layout::V1 => first(&["blkio.weight", "blkio.bfq.weight"]),
            Layout::V2 => first(&["io.weight", "io.bfq.weight"]),
        };
        if let Some(w) = b.weight {
            if !(10..=1000).contains(&w) {
                return Err(refuse(dir, "blkio weight must be 10 to 1000"));
            }
            let f = weight_file.ok_or_else(|| {
                refuse(
                    dir,
                    "blkio weight: no I/O scheduler with weights (CFQ or BFQ) here",
                )
            })?;
            let v = if f == "io.weight" {
                format!("default {w}")
            } else {
                w.to_string()
            };
            write(dir, f, &v)?;
        }
        if let Some(w) = b.leaf_weight {
            if !dir.join("blkio.leaf_weight").exists() {
                return Err(refuse(
                    dir,
                    "blkio leaf weight: only CFQ on cgroup v1 has one",
                ));
            }
            write(dir, "blkio.leaf_weight", &w.to_string())?;
        }
        for &(major, minor, w) in &b.weight_device {
            let f = match weight_file {
                Some("blkio.weight") => "blkio.weight_device",
                Some("blkio.bfq.weight") => "blkio.bfq.weight_device",
                Some(other) => other,
                None => {
                    return Err(refuse(
                        dir,
                        "blkio device weight: no I/O scheduler with weights here",
                    ))
                }
            };
            write(dir, f, &format!("{major}:{minor} {w}"))?;
        }
        let throttles = [
            ("blkio.throttle.read_bps_device", "rbps", &b.read_bps),
            ("blkio.throttle.write_bps_device", "wbps", &b.write_bps),
            ("blkio.throttle.read_iops_device", "riops", &b.read_iops),
            ("blkio.throttle.write_iops_device", "wiops", &b.write_iops),
        ];
        for (v1, v2, list) in throttles {
            for &(major, minor, rate) in list.iter() {
                match layout {
                    Layout::V1 => write(dir, v1, &format!("{major}:{minor} {rate}"))?,
                    Layout::V2 => write(dir, "io.max", &format!("{major}:{minor} {v2}={rate}"))?,
                }
            }
        }
        Ok(())
    }
}
