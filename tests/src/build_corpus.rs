//! The Dockerfiles `corral build` is compared with buildah on: each case a Dockerfile and the
//! context it needs (made by the test: git cannot hold hard links, owners or every mode).
//! None needs a network; `BASE` is a busybox image both tools have.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The base image's name in both tools.
pub const BASE: &str = "localhost/bb:test";

/// One entry of a context.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// A file with content and mode.
    File(&'static str, &'static str, u32),
    /// A directory and its mode.
    Dir(&'static str, u32),
    /// A symbolic link and its target.
    Symlink(&'static str, &'static str),
    /// A hard link to an earlier file.
    Hardlink(&'static str, &'static str),
    /// A tar archive of a small tree (`.tar`, or gzip with `.tar.gz`).
    Archive(&'static str),
}

/// A corpus case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name (also the image's: `localhost/case-NAME`).
    pub name: &'static str,
    /// The Dockerfile (`{BASE}` is replaced).
    pub dockerfile: &'static str,
    /// Context entries besides the common ones.
    pub files: Vec<Entry>,
    /// More build flags (the same for both tools).
    pub flags: Vec<&'static str>,
}

/// Files every context has.
const COMMON: [Entry; 8] = [
    Entry::File("a.txt", "alpha\n", 0o644),
    Entry::File("b.txt", "bravo\n", 0o644),
    Entry::File("run.sh", "#!/bin/sh\necho run\n", 0o755),
    Entry::Dir("dir", 0o755),
    Entry::File("dir/one", "one\n", 0o644),
    Entry::Dir("dir/sub", 0o750),
    Entry::File("dir/sub/two", "two\n", 0o600),
    Entry::Symlink("dir/link", "one"),
];

fn case(name: &'static str, dockerfile: &'static str) -> Case {
    Case {
        name,
        dockerfile,
        files: Vec::new(),
        flags: Vec::new(),
    }
}

fn with(mut c: Case, files: &[Entry]) -> Case {
    c.files.extend_from_slice(files);
    c
}

fn flags(mut c: Case, f: &[&'static str]) -> Case {
    c.flags.extend_from_slice(f);
    c
}

/// The corpus, in an order where a case that builds FROM another's image comes after it.
pub fn cases() -> Vec<Case> {
    vec![
        case("scratch-copy-file", "FROM scratch\nCOPY a.txt /a.txt\n"),
        case("scratch-copy-dir", "FROM scratch\nCOPY dir /d\n"),
        case("scratch-copy-dir-to-root", "FROM scratch\nCOPY dir /\n"),
        case("scratch-copy-glob", "FROM scratch\nCOPY *.txt /out/\n"),
        case("scratch-copy-several", "FROM scratch\nCOPY a.txt b.txt run.sh /m/\n"),
        case("scratch-copy-whole-context", "FROM scratch\nCOPY . /ctx/\n"),
        with(case("scratch-add-tar", "FROM scratch\nADD arch.tar /x/\n"), &[Entry::Archive("arch.tar")]),
        with(case("scratch-add-targz", "FROM scratch\nADD arch.tar.gz /y\n"), &[Entry::Archive("arch.tar.gz")]),
        case("copy-chown-numeric", "FROM {BASE}\nCOPY --chown=1000:1000 dir /d\n"),
        case(
            "copy-chown-name",
            "FROM {BASE}\nRUN echo 'app:x:1001:1002::/:/bin/sh' >> /etc/passwd && echo 'grp:x:1003:' >> /etc/group\nCOPY --chown=app:grp a.txt /owned/\nCOPY --chown=app b.txt /owned2/\n",
        ),
        case("copy-chmod", "FROM {BASE}\nCOPY --chmod=700 a.txt /a\n"),
        case("copy-relative-to-workdir", "FROM {BASE}\nWORKDIR /w\nCOPY a.txt .\nCOPY b.txt rel/\n"),
        with(case("copy-hardlinks", "FROM scratch\nCOPY hl /hl\n"), &[
            Entry::Dir("hl", 0o755),
            Entry::File("hl/first", "same inode\n", 0o644),
            Entry::Hardlink("hl/second", "hl/first"),
        ]),
        with(case("copy-modes", "FROM scratch\nCOPY modes /modes\n"), &[
            Entry::Dir("modes", 0o755),
            Entry::File("modes/private", "p\n", 0o600),
            Entry::File("modes/exec", "e\n", 0o755),
            Entry::File("modes/setgid", "s\n", 0o2755),
            Entry::Dir("modes/closed", 0o700),
            Entry::File("modes/closed/f", "f\n", 0o640),
        ]),
        case("copy-into-existing-dir", "FROM {BASE}\nCOPY a.txt /etc/\n"),
        case(
            "copy-dest-through-symlink",
            "FROM {BASE}\nRUN mkdir -p /opt/real && ln -s /opt/real /link\nCOPY a.txt /link/\n",
        ),
        case("copy-new-nested-dest", "FROM {BASE}\nCOPY dir /new/deep/place/\n"),
        case("run-basic", "FROM {BASE}\nRUN echo hi > /hi\n"),
        case("run-delete-file", "FROM {BASE}\nRUN rm /etc/group\n"),
        case(
            "run-delete-dir",
            "FROM {BASE}\nRUN mkdir -p /x/y && touch /x/y/z\nRUN rm -rf /x\n",
        ),
        case(
            "run-replace-dir",
            "FROM {BASE}\nRUN mkdir /o && touch /o/a\nRUN rm -rf /o && mkdir /o && touch /o/b\n",
        ),
        case(
            "run-owner-and-mode",
            "FROM {BASE}\nRUN mkdir /p && chown 1000:1000 /p && chmod 750 /p && touch /p/f && chmod 4755 /p/f\n",
        ),
        case(
            "run-links",
            "FROM {BASE}\nRUN echo x > /f && ln /f /hard && ln -s /f /soft\n",
        ),
        case("run-exec-form", "FROM {BASE}\nRUN [\"/bin/sh\", \"-c\", \"echo exec > /e\"]\n"),
        case(
            "run-shell-instruction",
            "FROM {BASE}\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo s > /s\nCMD echo shell\n",
        ),
        case(
            "env-and-arg-expansion",
            "FROM {BASE}\nARG A=1\nENV B=${A}-x C=\"$A y\" D=${UNSET:-dflt} E=${A:+set}\nRUN echo \"$B|$C|$D|$E\" > /vars\n",
        ),
        case("env-old-form", "FROM {BASE}\nENV K some spaced value\nRUN echo \"$K\" > /k\n"),
        case("arg-before-from", "ARG TAG=test\nFROM localhost/bb:${TAG}\nRUN echo ok > /ok\n"),
        flags(
            case("arg-given", "FROM {BASE}\nARG V\nARG W=default\nRUN echo \"$V $W\" > /v\n"),
            &["--build-arg", "V=given", "--build-arg", "W=over"],
        ),
        case(
            "arg-global-redeclared",
            "ARG X=global\nFROM {BASE}\nARG X\nRUN echo \"$X\" > /x\n",
        ),
        case(
            "multistage-copy-from-name",
            "FROM {BASE} AS build\nRUN mkdir /out && echo built > /out/artifact\nFROM scratch\nCOPY --from=build /out /\n",
        ),
        case(
            "multistage-copy-from-index",
            "FROM {BASE}\nRUN echo zero > /z\nFROM scratch\nCOPY --from=0 /z /z\n",
        ),
        flags(
            case(
                "multistage-target",
                "FROM {BASE} AS build\nRUN echo target > /t\nFROM build AS broken\nRUN false\n",
            ),
            &["--target", "build"],
        ),
        case(
            "multistage-from-stage",
            "FROM {BASE} AS base\nENV FROM_BASE=1\nRUN echo base > /base\nFROM base\nRUN echo next > /next\n",
        ),
        with(case("dockerignore", "FROM scratch\nCOPY . /ctx/\n"), &[
            Entry::File(".dockerignore", "*.log\ntmp/\n**/*.bak\n", 0o644),
            Entry::File("x.log", "log\n", 0o644),
            Entry::Dir("tmp", 0o755),
            Entry::File("tmp/t", "t\n", 0o644),
            Entry::File("dir/old.bak", "bak\n", 0o644),
        ]),
        with(case("dockerignore-exception", "FROM scratch\nCOPY . /ctx/\n"), &[
            Entry::File(".dockerignore", "docs\n!docs/keep.md\n*.txt\n!a.txt\n", 0o644),
            Entry::Dir("docs", 0o755),
            Entry::File("docs/keep.md", "keep\n", 0o644),
            Entry::File("docs/drop.md", "drop\n", 0o644),
        ]),
        case("entrypoint-and-cmd", "FROM {BASE}\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"hi\"]\n"),
        case("entrypoint-shell-form", "FROM {BASE}\nENTRYPOINT echo hi\n"),
        case(
            "entrypoint-resets-base-cmd",
            "FROM {BASE} AS base\nCMD [\"base\"]\nFROM base\nENTRYPOINT [\"/bin/echo\"]\n",
        ),
        case("cmd-shell-form", "FROM {BASE}\nCMD echo hi\n"),
        case(
            "metadata",
            "FROM {BASE}\nLABEL a=1 \"b c\"=\"d e\"\nEXPOSE 80 53/udp 8000-8001\nVOLUME /data [\"/other\"]\nUSER 1000:1000\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD true\nWORKDIR /srv\n",
        ),
        case("volume-json", "FROM {BASE}\nVOLUME [\"/a\", \"/b\"]\n"),
        case("healthcheck-none", "FROM {BASE}\nHEALTHCHECK NONE\n"),
        case("workdir-made", "FROM {BASE}\nWORKDIR /a/b/c\nWORKDIR d\n"),
        case("onbuild-record", "FROM {BASE}\nONBUILD RUN echo triggered > /triggered\n"),
        case("onbuild-fire", "FROM localhost/case-onbuild-record\nRUN echo after > /after\n"),
    ]
}

/// Makes the context of `case` in `dir` (which exists and is empty).
pub fn make_context(case: &Case, dir: &Path) {
    for e in COMMON.iter().chain(case.files.iter()) {
        match *e {
            Entry::File(p, content, mode) => {
                let path = dir.join(p);
                fs::write(&path, content).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            Entry::Dir(p, mode) => {
                let path = dir.join(p);
                fs::create_dir_all(&path).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            Entry::Symlink(p, target) => std::os::unix::fs::symlink(target, dir.join(p)).unwrap(),
            Entry::Hardlink(p, to) => fs::hard_link(dir.join(to), dir.join(p)).unwrap(),
            Entry::Archive(p) => {
                let mut t = crate::tarball::TarWriter::new();
                t.dir("top", 0o755)
                    .file("top/in-archive", 0o640, b"from the archive\n")
                    .symlink("top/link", "in-archive");
                let bytes = t.finish();
                let bytes = if p.ends_with(".gz") {
                    use std::io::Write;
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    gz.write_all(&bytes).unwrap();
                    gz.finish().unwrap()
                } else {
                    bytes
                };
                fs::write(dir.join(p), bytes).unwrap();
            }
        }
    }
    fs::write(
        dir.join("Dockerfile"),
        case.dockerfile.replace("{BASE}", BASE),
    )
    .unwrap();
}
