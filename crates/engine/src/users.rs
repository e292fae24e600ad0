//! User and group names to ids, read from the container's own `/etc/passwd` and `/etc/group`
//! (docker's rules: `USER[:GROUP]`, each a name or a number; a user name takes its primary
//! group from passwd, a number alone has group 0 unless passwd names it).
//!
//! The files are read from the image's layers (and a container's upper directory), top layer
//! first, each through `openat2(RESOLVE_IN_ROOT)`: the image is hostile input, and an absolute
//! symlink at `etc/passwd` must resolve inside that layer, never on the host.

use std::path::PathBuf;

use crate::EngineError;

/// A resolved user: uid, primary gid, the supplementary groups, and the home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids: the primary one (docker since the CVE-2022-36109 fix, podman,
    /// containerd), and, without an explicit group, those `/etc/group` lists the user in
    /// (runc's rule).
    pub groups: Vec<u32>,
    /// The home directory from passwd (`/root` for root, `/` for an unknown user).
    pub home: String,
}

/// Reads `rel` (e.g. `etc/passwd`) from the first of `dirs` (top first) that has it; a
/// whiteout (`.wh.NAME`) in a layer hides it from the layers below.
pub fn read_in_layers(dirs: &[PathBuf], rel: &str) -> Option<String> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    for d in dirs {
        let Ok(root) = rustix::fs::open(d, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) else {
            continue;
        };
        let open = |p: &str| {
            openat2(
                &root,
                p,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
        };
        if let Ok(fd) = open(rel) {
            let mut f = std::fs::File::from(fd);
            let mut s = String::new();
            use std::io::Read;
            // 4 MiB is far beyond any real passwd; a bigger one is not read whole.
            let _ = (&mut f).take(4 << 20).read_to_string(&mut s);
            return Some(s);
        }
        let wh = if parent.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{parent}/.wh.{name}")
        };
        if open(&wh).is_ok() {
            return None;
        }
    }
    None
}

fn lookup<'a>(file: Option<&'a str>, name: &str) -> Option<Vec<&'a str>> {
    file?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
}

/// Resolves `spec` (`USER[:GROUP]`) against the files in `dirs` (top layer first).
pub fn resolve(spec: &str, dirs: &[PathBuf]) -> Result<User, EngineError> {
    let passwd = read_in_layers(dirs, "etc/passwd");
    let group = read_in_layers(dirs, "etc/group");
    resolve_with(spec, passwd.as_deref(), group.as_deref())
}

/// [`resolve`] on the files' contents.
pub fn resolve_with(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User, EngineError> {
    let (u, g) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    if u.is_empty() {
        return Err(EngineError::invalid(format!(
            "user {spec:?}: the user part is empty"
        )));
    }
    let home_of = |f: &[&str]| f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string());
    let (uid, mut gid, name, home) = match u.parse::<u32>() {
        Ok(uid) => {
            // A number need not be in passwd; when it is, its group comes from there.
            let entry = passwd.and_then(|p| {
                p.lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 4 && f[2].parse() == Ok(uid))
                    .map(|f| (f[3].parse().unwrap_or(0), f[0].to_owned(), home_of(&f)))
            });
            match entry {
                Some((gid, name, home)) => (uid, gid, Some(name), home),
                None => (uid, 0, None, None),
            }
        }
        Err(_) => {
            let f = lookup(passwd, u).filter(|f| f.len() >= 4).ok_or_else(|| {
                EngineError::invalid(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                ))
            })?;
            let uid = f[2].parse().map_err(|_| {
                EngineError::invalid(format!("the passwd entry of {u} has a bad uid {:?}", f[2]))
            })?;
            (
                uid,
                f[3].parse().unwrap_or(0),
                Some(u.to_owned()),
                home_of(&f),
            )
        }
    };
    let home = home.unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    let mut groups = Vec::new();
    if let Some(g) = g {
        gid = group_id(g, group)?;
        return Ok(User {
            uid,
            gid,
            groups: vec![gid],
            home,
        });
    }
    if name.is_some() {
        groups.push(gid);
    }
    if let (Some(name), Some(gf)) = (&name, group) {
        for l in gf.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if !groups.contains(&id) {
                        groups.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home,
    })
}

/// A group name or number to its gid.
pub fn group_id(g: &str, group: Option<&str>) -> Result<u32, EngineError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    let f = lookup(group, g).ok_or_else(|| {
        EngineError::invalid(format!(
            "unable to find group {g}: no matching entries in group file"
        ))
    })?;
    f[2].parse()
        .map_err(|_| EngineError::invalid(format!("the group entry of {g} has a bad gid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nweb:x:1000:1000::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nweb:x:1000:\nwheel:x:10:web,root\n";

    #[test]
    fn names_and_numbers_resolve_as_docker_does() {
        let r = |s| resolve_with(s, Some(PASSWD), Some(GROUP));
        assert_eq!(
            r("nobody").unwrap(),
            User {
                uid: 65534,
                gid: 65534,
                groups: vec![65534],
                home: "/".into(),
            }
        );
        assert_eq!(r("web").unwrap().groups, vec![1000, 10]);
        assert_eq!(r("web").unwrap().home, "/home/web");
        assert_eq!(r("root").unwrap().groups, vec![0, 10]);
        assert_eq!(r("web:wheel").unwrap().groups, vec![10]);
        assert_eq!(r("1000").unwrap().gid, 1000);
        assert_eq!(r("4242").unwrap().gid, 0);
        assert_eq!(r("web:wheel").unwrap().gid, 10);
        assert_eq!(r("root:1234").unwrap().gid, 1234);
        let e = r("ghost").unwrap_err().to_string();
        assert!(e.contains("unable to find user ghost"), "{e}");
        let e = r("web:ghosts").unwrap_err().to_string();
        assert!(e.contains("unable to find group ghosts"), "{e}");
        // No passwd at all: numbers still work, names do not.
        assert_eq!(resolve_with("5", None, None).unwrap().uid, 5);
        assert!(resolve_with("root", None, None).is_err());
    }

    #[test]
    fn files_are_read_top_layer_first_and_inside_each_layer() {
        let top = tempfile::tempdir().unwrap();
        let low = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("etc")).unwrap();
        std::fs::write(low.path().join("etc/passwd"), "low:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        // An absolute symlink must resolve inside the layer, not to the host's passwd.
        std::os::unix::fs::symlink("/etc/shadow-nowhere", top.path().join("etc/passwd")).unwrap();
        let dirs = vec![top.path().to_path_buf(), low.path().to_path_buf()];
        assert_eq!(
            read_in_layers(&dirs, "etc/passwd").as_deref(),
            Some("low:x:1:1::/:/bin/sh\n")
        );
        std::fs::remove_file(top.path().join("etc/passwd")).unwrap();
        std::fs::write(top.path().join("etc/.wh.passwd"), "").unwrap();
        assert_eq!(read_in_layers(&dirs, "etc/passwd"), None);
    }
}
