//! The controllers few containers ask for: huge pages (`hugetlb`) and the packet class and
//! priority of v1 (`net_cls`, `net_prio`). Where the host has no such controller, a setting
//! is refused with the reason, never dropped.

use std::path::Path;

use super::{refuse, write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Hugetlb;

impl CgroupController for Hugetlb {
    const NAME: &'static str = "hugetlb";

    fn needed(r: &Resources) -> bool {
        !r.hugetlb.is_empty()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        for (size, limit) in &r.hugetlb {
            let file = match layout {
                Layout::V1 => format!("hugetlb.{size}.limit_in_bytes"),
                Layout::V2 => format!("hugetlb.{size}.max"),
            };
            if !dir.join(&file).exists() {
                return Err(refuse(
                    dir,
                    &format!("huge page size {size:?}: this host has no such page size"),
                ));
            }
            write(dir, &file, &limit.to_string())?;
        }
        Ok(())
    }
}

pub struct NetCls;

impl CgroupController for NetCls {
    const NAME: &'static str = "net_cls";

    fn needed(r: &Resources) -> bool {
        r.net_cls_classid.is_some()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        let Some(id) = r.net_cls_classid else {
            return Ok(());
        };
        if layout == Layout::V2 {
            return Err(refuse(dir, "net_cls class id: cgroup v2 has no net_cls"));
        }
        write(dir, "net_cls.classid", &id.to_string())
    }
}

pub struct NetPrio;

impl CgroupController for NetPrio {
    const NAME: &'static str = "net_prio";

    fn needed(r: &Resources) -> bool {
        !r.net_prio.is_empty()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        if layout == Layout::V2 {
            return Err(refuse(
                dir,
                "net_prio priorities: cgroup v2 has no net_prio",
            ));
        }
        for (iface, prio) in &r.net_prio {
            write(dir, "net_prio.ifpriomap", &format!("{iface} {prio}"))?;
        }
        Ok(())
    }
}
