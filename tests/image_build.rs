//! End-to-end tests of `corral build`: a corpus of Dockerfiles built by corral and by buildah
//! (Debian's 1.28, `bud --format docker --layers`) and compared as a user would compare the
//! images — their configs and their flattened filesystems (paths, types, modes, owners, link
//! targets, contents); the cache (cold, no change, touch, one file changed, a build argument
//! changed); stages in parallel and unneeded stages skipped; bad input; and the images running
//! under `corral run` and podman.
//!
//! Differences from buildah that are expected are listed, each with its reason, in
//! `build-expected-differences.txt`; any other difference fails the test.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

use corral_e2e::build_corpus::{self, Case, BASE};
use corral_e2e::buildah::Buildah;
use corral_e2e::process::describe;
use corral_e2e::{fixtures, skip_unless_root, skip_unless_tools, unique_name, Corral};

/// One flattened filesystem entry, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    link: String,
    content: String,
}

fn world_with_base() -> Corral {
    let c = Corral::new();
    let tar = c.path("bb.tar");
    fixtures::busybox_rootfs_tar(&tar);
    c.ok(&["image", "import", tar.to_str().unwrap(), BASE]);
    c
}

/// The flattened filesystem of `image`: a container created from it, exported.
fn flatten(c: &Corral, image: &str) -> BTreeMap<String, Node> {
    let name = unique_name("flat");
    c.ok(&["create", "--name", &name, image, "/none"]);
    let out = c.path(&format!("{name}.tar"));
    let exported = c.cmd(&["export", "-o", out.to_str().unwrap(), &name]);
    c.ok(&["rm", "-f", &name]);
    assert!(
        exported.status.success(),
        "export {image}: {}",
        describe(&exported)
    );
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let mut map = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if path.is_empty() || path == "." {
            continue;
        }
        let h = e.header().clone();
        let kind = format!("{:?}", h.entry_type());
        let link = e
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        // A hard link reads as its target's content; compare it as a file.
        let (kind, link) = if kind == "Link" {
            ("Regular".to_owned(), format!("hardlink:{link}"))
        } else {
            (kind, link)
        };
        map.insert(
            path,
            Node {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                content: if data.is_empty() {
                    String::new()
                } else {
                    hex::encode(Sha256::digest(&data))
                },
            },
        );
    }
    let _ = std::fs::remove_file(&out);
    map
}

/// The config fields the comparison covers.
const FIELDS: [&str; 12] = [
    "Entrypoint",
    "Cmd",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "Healthcheck",
    "StopSignal",
    "Shell",
    "OnBuild",
];

fn config(c: &Corral, image: &str) -> Value {
    let v: Value = serde_json::from_str(&c.ok(&["image", "inspect", image])).unwrap();
    let v = match v {
        Value::Array(mut a) => a.swap_remove(0),
        o => o,
    };
    v["config"]["config"].clone()
}

fn normalise(field: &str, v: &Value) -> Value {
    let mut v = v.clone();
    if field == "Labels" {
        if let Some(m) = v.as_object_mut() {
            // buildah stamps its own version on every image.
            m.remove("io.buildah.version");
            if m.is_empty() {
                return Value::Null;
            }
        }
    }
    match &v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        _ => v,
    }
}

/// The expected differences: `CASE WHAT` (WHAT a config field or a path), each with a reason.
fn expected() -> Vec<(String, String)> {
    let text = include_str!("build-expected-differences.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap_or("").to_owned(),
                w.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn build_both(c: &Corral, b: &Buildah, case: &Case, ctx: &Path) -> (String, String) {
    let ours = format!("localhost/case-{}", case.name);
    let theirs = format!("localhost/bh-{}", case.name);
    let mut args = vec!["build", "-q", "-t", &ours];
    args.extend(case.flags.iter().copied());
    let ctx_s = ctx.to_str().unwrap();
    args.push(ctx_s);
    let out = c.cmd(&args);
    assert!(
        out.status.success(),
        "corral build of case {}: {}",
        case.name,
        describe(&out)
    );
    // buildah builds under the same name (a later case may build FROM it), then hands its
    // image to corral as an archive under another.
    let out = b.bud(ctx, &ours, &case.flags);
    assert!(
        out.status.success(),
        "buildah bud of case {}: {}",
        case.name,
        describe(&out)
    );
    let archive = c.path(&format!("bh-{}.tar", case.name));
    b.ok(&[
        "push",
        &ours,
        &format!("oci-archive:{}:{theirs}", archive.display()),
    ]);
    c.ok(&["load", "-i", archive.to_str().unwrap()]);
    let _ = std::fs::remove_file(&archive);
    (ours, theirs)
}

#[test]
fn corpus_builds_as_buildah_builds_it() {
    if skip_unless_root("corpus_builds_as_buildah_builds_it")
        || skip_unless_tools("corpus_builds_as_buildah_builds_it", &["buildah"])
    {
        return;
    }
    let c = world_with_base();
    let b = Buildah::new();
    let base_archive = c.path("base.tar");
    c.ok(&["image", "save", BASE, "-o", base_archive.to_str().unwrap()]);
    b.ok(&["pull", &format!("oci-archive:{}", base_archive.display())]);
    let expected = expected();
    let mut unexplained = Vec::new();
    let mut explained = 0;
    let cases = build_corpus::cases();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    for case in &cases {
        let ctx = c.path(&format!("ctx-{}", case.name));
        std::fs::create_dir(&ctx).unwrap();
        build_corpus::make_context(case, &ctx);
        let (ours, theirs) = build_both(&c, &b, case, &ctx);
        let mut diffs = Vec::new();
        let (co, ct) = (config(&c, &ours), config(&c, &theirs));
        for f in FIELDS {
            let (a, b) = (normalise(f, &co[f]), normalise(f, &ct[f]));
            if a != b {
                diffs.push((
                    f.to_owned(),
                    format!("config {f}: corral {a} / buildah {b}"),
                ));
            }
        }
        let (fo, ft) = (flatten(&c, &ours), flatten(&c, &theirs));
        for (p, n) in &fo {
            match ft.get(p) {
                None => diffs.push((format!("/{p}"), format!("/{p}: only in corral's ({n:?})"))),
                Some(m) if m != n => diffs.push((
                    format!("/{p}"),
                    format!("/{p}: corral {n:?} / buildah {m:?}"),
                )),
                _ => {}
            }
        }
        for (p, m) in &ft {
            if !fo.contains_key(p) {
                diffs.push((format!("/{p}"), format!("/{p}: only in buildah's ({m:?})")));
            }
        }
        for (what, text) in diffs {
            if expected.iter().any(|(cs, w)| {
                (cs == case.name || cs == "*")
                    && (w == &what
                        || (w.ends_with('*') && what.starts_with(w.trim_end_matches('*'))))
            }) {
                explained += 1;
            } else {
                unexplained.push(format!("{}: {text}", case.name));
            }
        }
    }
    eprintln!(
        "build corpus: {} cases, {explained} expected differences",
        cases.len()
    );
    assert!(
        unexplained.is_empty(),
        "differences from buildah:\n{}",
        unexplained.join("\n")
    );
    c.assert_no_leaks();
}

/// A build's steps as the progress prints them: (step text, cached).
fn steps(out: &str) -> Vec<(String, bool)> {
    out.lines()
        .filter(|l| l.starts_with('[') && !l.contains("] DONE "))
        .map(|l| (l.to_owned(), l.ends_with("  CACHED")))
        .collect()
}

fn build(c: &Corral, ctx: &Path, extra: &[&str]) -> (String, Vec<(String, bool)>) {
    let mut args = vec!["build", "-t", "localhost/cache-test"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = c.cmd(&args);
    assert!(out.status.success(), "corral build: {}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text.lines().last().unwrap_or("").to_owned();
    (id, steps(&text))
}

#[test]
fn cache_hits_and_misses_exactly_where_inputs_changed() {
    if skip_unless_root("cache_hits_and_misses_exactly_where_inputs_changed") {
        return;
    }
    let c = world_with_base();
    let ctx = c.path("ctx");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("src/one"), "1\n").unwrap();
    std::fs::write(ctx.join("src/two"), "2\n").unwrap();
    std::fs::write(ctx.join("late"), "late\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE}\nRUN echo base > /base\nCOPY src /src\nARG V=1\nCOPY late /late\nRUN echo \"$V\" > /v\nRUN cat /src/one > /copy\nLABEL done=yes\n"
        ),
    )
    .unwrap();
    let (cold, s) = build(&c, &ctx, &[]);
    assert!(
        s.iter()
            .skip(1)
            .all(|(t, cached)| !cached || t.contains("ARG")),
        "cold build hit the cache: {s:?}"
    );
    // No change: every step cached, the same image.
    let (id, s) = build(&c, &ctx, &[]);
    assert_eq!(id, cold, "a rebuild with no change made another image");
    let cacheable: Vec<_> = s
        .iter()
        .skip(1)
        .filter(|(t, _)| !t.contains("ARG"))
        .collect();
    assert!(
        cacheable.iter().all(|(_, hit)| *hit),
        "not all cached: {s:?}"
    );
    // Touched only: still all cached.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.join("src/one"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let (id, s) = build(&c, &ctx, &[]);
    assert_eq!(id, cold, "touching a file changed the image: {s:?}");
    // One file changed: cached up to its COPY, rebuilt from there.
    std::fs::write(ctx.join("src/two"), "changed\n").unwrap();
    let (_, s) = build(&c, &ctx, &[]);
    let hits: Vec<bool> = s
        .iter()
        .filter(|(t, _)| !t.contains("ARG") && !t.contains("FROM"))
        .map(|(_, h)| *h)
        .collect();
    assert_eq!(
        hits,
        vec![true, false, false, false, false, false],
        "after changing src/two: {s:?}"
    );
    // A build argument changed: rebuilt from its first use (the RUN after it), not before.
    let (_, s) = build(&c, &ctx, &["--build-arg", "V=2"]);
    let hits: Vec<bool> = s
        .iter()
        .filter(|(t, _)| !t.contains("ARG") && !t.contains("FROM"))
        .map(|(_, h)| *h)
        .collect();
    assert_eq!(
        hits,
        vec![true, true, true, false, false, false],
        "after --build-arg V=2: {s:?}"
    );
    let out = c.ok(&[
        "run",
        "--rm",
        "localhost/cache-test",
        "cat",
        "/v",
        "/src/two",
    ]);
    assert_eq!(out, "2\nchanged\n");
    // --no-cache runs everything again.
    let (_, s) = build(&c, &ctx, &["--no-cache"]);
    assert!(
        s.iter().all(|(_, hit)| !hit),
        "--no-cache hit the cache: {s:?}"
    );
    let pruned = c.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("build cache entries"), "{pruned}");
    let (_, s) = build(&c, &ctx, &[]);
    assert!(
        s.iter().skip(1).all(|(t, hit)| !hit || t.contains("ARG")),
        "hits after prune: {s:?}"
    );
    c.assert_no_leaks();
}

#[test]
fn independent_stages_run_in_parallel_and_unneeded_ones_never_run() {
    if skip_unless_root("independent_stages_run_in_parallel_and_unneeded_ones_never_run") {
        return;
    }
    let c = world_with_base();
    let ctx = c.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE} AS a\nRUN sleep 2 && echo a > /a\nFROM {BASE} AS b\nRUN sleep 2 && echo b > /b\nFROM {BASE} AS unused\nRUN false\nFROM {BASE}\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
        ),
    )
    .unwrap();
    let t = Instant::now();
    let out = c.cmd(&["build", "-t", "localhost/par", ctx.to_str().unwrap()]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("RUN false"), "the unused stage ran:\n{text}");
    assert!(
        took.as_secs_f64() < 3.6,
        "two 2 s stages took {took:?}: not in parallel\n{text}"
    );
    assert_eq!(
        c.ok(&["run", "--rm", "localhost/par", "cat", "/a", "/b"]),
        "a\nb\n"
    );
    c.assert_no_leaks();
}

/// `corral build` of `dockerfile` (and context files) that must fail; its stderr.
fn must_fail(
    c: &Corral,
    name: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
    extra: &[&str],
) -> String {
    let ctx = c.path(&format!("bad-{name}"));
    std::fs::create_dir_all(&ctx).unwrap();
    if !dockerfile.is_empty() {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    }
    for (p, content) in files {
        std::fs::write(ctx.join(p), content).unwrap();
    }
    let tag = format!("localhost/bad-{name}");
    let mut args = vec!["build", "-t", &tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = c.cmd(&args);
    assert!(
        !out.status.success(),
        "build {name} succeeded: {}",
        describe(&out)
    );
    assert!(
        !c.has_image(&tag),
        "a failed build ({name}) tagged its image"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    if skip_unless_root("bad_input_is_refused_clearly_and_leaves_nothing") {
        return;
    }
    let c = world_with_base();
    let e = must_fail(&c, "missing", "", &[], &[]);
    assert!(e.contains("Dockerfile"), "{e}");
    let e = must_fail(&c, "unknown", &format!("FROM {BASE}\nFLY away\n"), &[], &[]);
    assert!(e.contains("line 2") && e.contains("FLY"), "{e}");
    let e = must_fail(
        &c,
        "expansion",
        &format!("FROM {BASE}\nENV A=${{B:?must be set}}\n"),
        &[],
        &[],
    );
    assert!(e.contains(":2:1") && e.contains("must be set"), "{e}");
    let e = must_fail(
        &c,
        "outside",
        &format!("FROM {BASE}\nCOPY ../x /x\n"),
        &[],
        &[],
    );
    assert!(e.contains("outside the build context"), "{e}");
    let ctx = c.path("bad-link");
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("escape")).unwrap();
    let e = must_fail(
        &c,
        "link",
        &format!("FROM {BASE}\nCOPY escape /x\n"),
        &[],
        &[],
    );
    assert!(e.contains("outside the build context"), "{e}");
    let e = must_fail(
        &c,
        "runfails",
        &format!("FROM {BASE}\nRUN echo about to fail && exit 7\n"),
        &[],
        &["-q"],
    );
    assert!(e.contains("code 7") && e.contains("about to fail"), "{e}");
    let e = must_fail(
        &c,
        "nostage",
        &format!("FROM {BASE}\nCOPY --from=nowhere /x /x\n"),
        &[],
        &[],
    );
    assert!(e.contains("nowhere"), "{e}");
    let e = must_fail(
        &c,
        "secret",
        &format!("FROM {BASE}\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n"),
        &[],
        &[],
    );
    assert!(e.contains("secret tok") && e.contains("--secret"), "{e}");
    let e = must_fail(
        &c,
        "target",
        &format!("FROM {BASE}\n"),
        &[],
        &["--target", "nope"],
    );
    assert!(e.contains("nope"), "{e}");
    let ctx = c.path("bad-socket");
    std::fs::create_dir_all(&ctx).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(ctx.join("sock")).unwrap();
    let e = must_fail(
        &c,
        "socket",
        &format!("FROM {BASE}\nCOPY . /ctx\n"),
        &[],
        &[],
    );
    assert!(e.contains("socket") && e.contains(".dockerignore"), "{e}");
    let e = must_fail(
        &c,
        "platform",
        &format!("FROM {BASE}\n"),
        &[],
        &["--platform", "linux/arm64"],
    );
    assert!(e.contains("linux/amd64"), "{e}");
    // No build step's container stays behind.
    assert_eq!(c.ok(&["ps", "-aq"]).trim(), "", "containers left behind");
    c.assert_no_leaks();
}

#[test]
fn built_images_run_under_corral_and_podman_and_keep_secrets_out() {
    if skip_unless_root("built_images_run_under_corral_and_podman_and_keep_secrets_out")
        || skip_unless_tools(
            "built_images_run_under_corral_and_podman_and_keep_secrets_out",
            &["podman"],
        )
    {
        return;
    }
    let c = world_with_base();
    let ctx = c.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(c.path("token"), "s3cret\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE}\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-length && wc -c < /run/secrets/tok > /seen-length\nRUN --mount=type=cache,target=/cache echo cached >> /cache/log && cp /cache/log /cache-copy\nRUN <<EOF\necho from heredoc > /heredoc\nEOF\nCOPY <<note.txt /notes/\nhello $HOSTNAME\nnote.txt\nCMD [\"cat\", \"/heredoc\"]\n"
        ),
    )
    .unwrap();
    let secret = format!("id=tok,src={}", c.path("token").display());
    c.ok(&[
        "build",
        "-t",
        "localhost/runs",
        "--secret",
        &secret,
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(c.ok(&["run", "--rm", "localhost/runs"]), "from heredoc\n");
    assert_eq!(
        c.ok(&["run", "--rm", "localhost/runs", "cat", "/seen-length"])
            .trim(),
        "7"
    );
    let ls = c.cmd(&["run", "--rm", "localhost/runs", "ls", "/run/secrets/tok"]);
    assert!(
        !ls.status.success(),
        "the secret's mount point stayed in the image"
    );
    let archive = c.path("runs.tar");
    c.ok(&[
        "image",
        "save",
        "localhost/runs",
        "-o",
        archive.to_str().unwrap(),
    ]);
    let p = corral_e2e::podman::Podman::new();
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    let saved: Value = p.inspect("localhost/runs");
    assert_eq!(
        saved["Config"]["Cmd"],
        serde_json::json!(["cat", "/heredoc"]),
        "{saved}"
    );
    c.assert_no_leaks();
}

/// A one-file HTTP server on loopback (python's), stopped on drop.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_fetches_urls_checks_checksums_and_binds_stages() {
    if skip_unless_root("add_fetches_urls_checks_checksums_and_binds_stages")
        || skip_unless_tools(
            "add_fetches_urls_checks_checksums_and_binds_stages",
            &["python3"],
        )
    {
        return;
    }
    let c = world_with_base();
    let served = c.path("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("payload.txt"), "fetched over http\n").unwrap();
    let sum = hex::encode(Sha256::digest(b"fetched over http\n"));
    let srv = FileServer::start(&served);
    let url = format!("http://127.0.0.1:{}/payload.txt", srv.port);
    let ctx = c.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE} AS tools\nRUN mkdir /tools && echo tool > /tools/t\nFROM {BASE}\nADD --checksum=sha256:{sum} {url} /dl/\nRUN --mount=type=bind,from=tools,source=/tools,target=/mnt cat /mnt/t > /from-stage\n"
        ),
    )
    .unwrap();
    c.ok(&["build", "-t", "localhost/fetched", ctx.to_str().unwrap()]);
    let out = c.ok(&[
        "run",
        "--rm",
        "localhost/fetched",
        "sh",
        "-c",
        "cat /dl/payload.txt /from-stage; stat -c %a /dl/payload.txt; ls /mnt | wc -l",
    ]);
    assert_eq!(out, "fetched over http\ntool\n600\n0\n");
    // Unchanged content: the ADD hits the cache; changed content: it misses.
    let again = c.ok(&["build", "-t", "localhost/fetched", ctx.to_str().unwrap()]);
    assert!(
        again
            .lines()
            .any(|l| l.contains("ADD") && l.ends_with("CACHED")),
        "{again}"
    );
    let e = must_fail(
        &c,
        "checksum",
        &format!(
            "FROM {BASE}\nADD --checksum=sha256:{} {url} /x\n",
            "0".repeat(64)
        ),
        &[],
        &[],
    );
    assert!(e.contains("checksum does not match"), "{e}");
    drop(srv);
    let e = must_fail(
        &c,
        "unreachable",
        &format!("FROM {BASE}\nADD {url} /x\n"),
        &[],
        &[],
    );
    assert!(e.contains("cannot fetch"), "{e}");
    assert!(
        corral_e2e::mounts::mounts_under(c.root()).is_empty(),
        "a stage mount stayed"
    );
    c.assert_no_leaks();
}

#[test]
fn interrupt_stops_the_build_and_leaves_nothing() {
    if skip_unless_root("interrupt_stops_the_build_and_leaves_nothing") {
        return;
    }
    let c = world_with_base();
    let ctx = c.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE}\nRUN echo started && sleep 60\n"),
    )
    .unwrap();
    let mut child = c
        .command(&[
            "build",
            "-t",
            "localhost/interrupted",
            ctx.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the build ended before its RUN started"
        );
        if line.starts_with("started") {
            break;
        }
    }
    let t = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(
        t.elapsed().as_secs() < 15,
        "the build took {:?} to stop",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(130), "exit status after ^C");
    assert!(
        !c.has_image("localhost/interrupted"),
        "an interrupted build tagged its image"
    );
    assert_eq!(
        c.ok(&["ps", "-aq"]).trim(),
        "",
        "the step's container stayed"
    );
    c.assert_no_leaks();
}

#[test]
fn isolation_vm_runs_each_step_under_its_own_kernel() {
    if skip_unless_root("isolation_vm_runs_each_step_under_its_own_kernel")
        || skip_unless_tools(
            "isolation_vm_runs_each_step_under_its_own_kernel",
            &["qemu-system-x86_64", "qemu-img"],
        )
    {
        return;
    }
    let Some(kernel) = corral_e2e::vms::guest_kernel() else {
        corral_e2e::report_skip(
            "isolation_vm_runs_each_step_under_its_own_kernel",
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return;
    };
    let c = world_with_base();
    let ctx = c.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE}\nRUN uname -r > /kernel && rm /etc/group && mkdir -p /made/in && echo vm > /made/in/vm\nCMD [\"cat\", \"/kernel\"]\n"),
    )
    .unwrap();
    c.ok(&[
        "build",
        "--isolation",
        "vm",
        "-t",
        "localhost/vm-built",
        ctx.to_str().unwrap(),
    ]);
    // The step ran under the guest's kernel, not the host's; its changes (a deletion too)
    // are the image's layer.
    assert_eq!(c.ok(&["run", "--rm", "localhost/vm-built"]).trim(), kernel);
    let out = c.ok(&[
        "run",
        "--rm",
        "localhost/vm-built",
        "sh",
        "-c",
        "cat /made/in/vm; test -e /etc/group && echo group-still-there; true",
    ]);
    assert_eq!(out, "vm\n");
    let e = must_fail(
        &c,
        "vm-mount",
        &format!("FROM {BASE}\nRUN --mount=type=tmpfs,target=/t true\n"),
        &[],
        &["--isolation", "vm"],
    );
    assert!(e.contains("--isolation vm"), "{e}");
    assert_eq!(c.ok(&["vm", "ls", "-q"]).trim(), "", "a step's VM stayed");
    corral_e2e::vms::assert_no_vm_leftovers(&c);
    c.assert_no_leaks();
}
