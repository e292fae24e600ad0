//! End-to-end tests of corral's image commands, against the contract in docs/cli-images.md:
//! import, load, save, ls, inspect, tag, rm, prune, pull and push — with podman, skopeo and
//! Debian's docker-registry as the peers, and hostile, tampered, interrupted and out-of-space
//! cases. Every test runs the real binary as root; see `corral_e2e` for the harness.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_e2e::files::{
    dir_names, disk_use, files_with_content, files_with_sha256, regular_files, tree, walk,
};
use corral_e2e::fixtures::{
    busybox_rootfs_bytes, busybox_rootfs_tar, busybox_rootfs_with_random, tampered_docker_archive,
    tampered_oci_archive, three_layer_docker_archive, three_layer_oci_archive, ArchiveFixture,
    REPLACED_NEW, TAMPERED_CONTENT,
};
use corral_e2e::hostile;
use corral_e2e::process::run_ok;
use corral_e2e::registry::{corrupt_file, free_port, REGISTRY_BIN};
use corral_e2e::tarball::Compression;
use corral_e2e::world::printed_id;
use corral_e2e::{
    path_str, sha256_digest, skip_unless_root, skip_unless_tools, test_tempdir, unique_token,
    Corral, ImageInfo, OverlayMount, Podman, Registry, ThrottleProxy,
};

/// corral's own failures exit 125 (docker's convention, docs/cli-images.md).
const EXIT_CORRAL: i32 = 125;
const SKOPEO_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// helpers

/// Asserts a failure is corral's own (125) and reads as an error; `needles`: at least one must
/// appear in stderr (case-insensitive) — what makes the message clear for this case.
fn assert_clear_error(what: &str, code: i32, stderr: &str, needles: &[&str]) {
    assert_eq!(code, EXIT_CORRAL, "{what}: exit code, stderr:\n{stderr}");
    assert!(
        stderr.contains("error:"),
        "{what}: stderr lacks `error:`:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{what}: stderr mentions none of {needles:?}:\n{stderr}"
    );
}

/// Like [`assert_clear_error`], and the `hint:` line the contract promises.
fn assert_clear_error_with_hint(what: &str, code: i32, stderr: &str, needles: &[&str]) {
    assert_clear_error(what, code, stderr, needles);
    assert!(
        stderr.contains("hint:"),
        "{what}: stderr lacks a `hint:` line:\n{stderr}"
    );
}

/// The listing of `image ls --json` as names, for messages.
fn listing(c: &Corral) -> Vec<String> {
    c.images()
        .iter()
        .map(|i| format!("{} ({})", i.name, i.id))
        .collect()
}

/// True if `listed` (maybe a short id) designates the full id `full`.
fn same_id(listed: &str, full: &str) -> bool {
    let listed = listed.trim_start_matches("sha256:");
    !listed.is_empty() && full.trim_start_matches("sha256:").starts_with(listed)
}

/// Every layer path of `info` is a directory inside `CORRAL_ROOT`.
fn assert_layers_in_root(c: &Corral, info: &ImageInfo) {
    for layer in &info.layers {
        assert!(
            layer.path.starts_with(c.root()) && layer.path.is_dir(),
            "layer path {} is not a directory under CORRAL_ROOT {}",
            layer.path.display(),
            c.root().display()
        );
    }
}

/// Mounts the layers of `name` as a read-only overlay and checks what the three-layer fixture
/// must look like: the whiteout, the replaced file, the opaque directory, busybox.
fn assert_three_layer_view(c: &Corral, name: &str, fixture: &ArchiveFixture) {
    let info = c.inspect(name);
    assert_eq!(
        info.diff_ids(),
        fixture.diff_ids,
        "diff ids of {name} (inspect: {:#})",
        info.raw
    );
    assert_layers_in_root(c, &info);

    let view = OverlayMount::new(
        &info.layer_paths(),
        &c.path(&format!("merged-{}", unique_token())),
    );
    let merged = view.path();
    assert!(
        fs::symlink_metadata(merged.join("etc/removed")).is_err(),
        "etc/removed should be deleted by layer 2's whiteout"
    );
    assert_eq!(
        fs::read(merged.join("etc/replaced")).expect("etc/replaced"),
        REPLACED_NEW,
        "etc/replaced should hold layer 2's content"
    );
    assert_eq!(
        dir_names(&merged.join("data/opaque")),
        ["c"],
        "data/opaque is opaque in layer 3 and should hold only c"
    );
    assert_eq!(
        fs::read(merged.join("data/opaque/c")).expect("data/opaque/c"),
        b"c\n"
    );
    let busybox = fs::metadata(merged.join("bin/busybox")).expect("bin/busybox in the view");
    assert!(busybox.is_file() && busybox.permissions().mode() & 0o111 != 0);
    let leftovers: Vec<PathBuf> = walk(merged)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".wh."))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "whiteouts not in overlay form: {leftovers:?}"
    );
    drop(view);
}

/// Names of the entries of a tar file.
fn tar_entry_names(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(fs::File::open(path).expect("open tar"));
    archive
        .entries()
        .expect("tar entries")
        .map(|e| {
            let e = e.expect("tar entry");
            let path = e.path().expect("entry path").to_string_lossy().into_owned();
            path.trim_start_matches("./").to_owned()
        })
        .collect()
}

/// Reads one entry of a tar file.
fn tar_entry(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut archive = tar::Archive::new(fs::File::open(path).expect("open tar"));
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            == name
        {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read entry");
            return Some(data);
        }
    }
    None
}

fn skopeo(args: &[&str]) -> String {
    run_ok("skopeo", args, SKOPEO_TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// 1. import

#[test]
fn import_rootfs_plain_gzip_zstd_lists_and_unpacks() {
    if skip_unless_root("import_rootfs_plain_gzip_zstd_lists_and_unpacks") {
        return;
    }
    let c = Corral::new();
    let plain = c.path("rootfs.tar");
    let bytes = busybox_rootfs_tar(&plain);
    let diff_id = sha256_digest(&bytes);
    let gz = c.path("rootfs.tar.gz");
    fs::write(&gz, Compression::Gzip.apply(&bytes)).unwrap();
    let zst = c.path("rootfs.tar.zst");
    fs::write(&zst, Compression::Zstd.apply(&bytes)).unwrap();

    for (file, name) in [
        (&plain, "bb-plain:v1"),
        (&gz, "bb-gzip:v1"),
        (&zst, "bb-zstd:v1"),
    ] {
        let id = printed_id(&c.ok(&["image", "import", path_str(file), name]));
        let images = c.images();
        let row = images
            .iter()
            .find(|i| i.is_named(name))
            .unwrap_or_else(|| panic!("image ls --json lacks {name}: {images:#?}"));
        assert!(same_id(&row.id, &id), "ls id {} != import id {id}", row.id);

        let info = c.inspect(name);
        assert_eq!(info.id, id, "inspect id vs the id import printed");
        assert_eq!(info.layers.len(), 1, "one layer: {:#}", info.raw);
        assert_eq!(
            info.layers[0].diff_id, diff_id,
            "diff id = sha256 of the uncompressed tar"
        );
        assert_layers_in_root(&c, &info);
        let layer = &info.layers[0].path;
        let busybox = fs::metadata(layer.join("bin/busybox")).expect("bin/busybox in the layer");
        assert!(busybox.is_file(), "bin/busybox is a file");
        assert!(
            busybox.permissions().mode() & 0o111 != 0,
            "bin/busybox is executable"
        );
        assert_eq!(
            fs::read_link(layer.join("bin/sh")).expect("bin/sh link"),
            PathBuf::from("busybox")
        );
        let tmp = fs::metadata(layer.join("tmp")).expect("tmp");
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777, "tmp is 1777");
    }

    // `-` reads the tarball from stdin.
    let out = c.cmd_with_stdin(&["image", "import", "-", "bb-stdin:v1"], bytes);
    assert!(
        out.status.success(),
        "import from stdin: {}",
        corral_e2e::process::describe(&out)
    );
    let id = printed_id(&String::from_utf8_lossy(&out.stdout));
    let info = c.inspect("bb-stdin:v1");
    assert_eq!(info.id, id);
    assert_eq!(info.diff_ids(), [diff_id]);
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 2. load

#[test]
fn load_oci_archive_applies_whiteouts_and_opaque_dirs() {
    if skip_unless_root("load_oci_archive_applies_whiteouts_and_opaque_dirs") {
        return;
    }
    let c = Corral::new();
    let archive = c.path("three.oci.tar");
    let fixture = three_layer_oci_archive(&archive, "three-oci:v1");
    let out = c.ok(&["image", "load", "-i", path_str(&archive)]);
    assert!(
        out.contains("Loaded image") && out.contains("three-oci:v1"),
        "load output: {out}"
    );
    assert!(c.has_image("three-oci:v1"), "image ls: {:?}", listing(&c));
    assert_three_layer_view(&c, "three-oci:v1", &fixture);
    c.assert_no_leaks();
}

#[test]
fn load_docker_archive_applies_whiteouts_and_opaque_dirs() {
    if skip_unless_root("load_docker_archive_applies_whiteouts_and_opaque_dirs") {
        return;
    }
    let c = Corral::new();
    let archive = c.path("three.docker.tar");
    let fixture = three_layer_docker_archive(&archive, "three-docker:v1");
    let out = c.ok(&["image", "load", "-i", path_str(&archive)]);
    assert!(
        out.contains("Loaded image") && out.contains("three-docker:v1"),
        "load output: {out}"
    );
    assert!(
        c.has_image("three-docker:v1"),
        "image ls: {:?}",
        listing(&c)
    );
    assert_three_layer_view(&c, "three-docker:v1", &fixture);
    c.assert_no_leaks();
}

#[test]
fn load_compressed_archive_works() {
    if skip_unless_root("load_compressed_archive_works") {
        return;
    }
    let c = Corral::new();
    let archive = c.path("three.docker.tar");
    let fixture = three_layer_docker_archive(&archive, "three-gz:v1");
    let gz = c.path("three.docker.tar.gz");
    fs::write(&gz, Compression::Gzip.apply(&fs::read(&archive).unwrap())).unwrap();
    c.ok(&["image", "load", "-i", path_str(&gz)]);
    assert_three_layer_view(&c, "three-gz:v1", &fixture);
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 3. save, and round trips with podman

#[test]
fn save_archive_loads_in_podman_with_same_diff_ids() {
    if skip_unless_tools(
        "save_archive_loads_in_podman_with_same_diff_ids",
        &["podman"],
    ) {
        return;
    }
    let c = Corral::new();
    let input = c.path("three.oci.tar");
    let fixture = three_layer_oci_archive(&input, "saved:v1");
    c.ok(&["image", "load", "-i", path_str(&input)]);
    let saved = c.path("saved.tar");
    c.ok(&["image", "save", "saved:v1", "-o", path_str(&saved)]);

    // The contract's layout: oci-layout, index.json naming the image, and a docker manifest.
    let names = tar_entry_names(&saved);
    for required in ["oci-layout", "index.json", "manifest.json"] {
        assert!(
            names.iter().any(|n| n == required),
            "saved archive lacks {required}: {names:?}"
        );
    }
    let index: serde_json::Value =
        serde_json::from_slice(&tar_entry(&saved, "index.json").expect("index.json")).unwrap();
    let ref_name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ref_name.contains("saved") || ref_name == "v1",
        "index.json ref.name annotation names the image: {index:#}"
    );

    let podman = Podman::new();
    podman.ok(&["load", "-i", path_str(&saved)]);
    let ids = podman.image_ids();
    assert_eq!(ids.len(), 1, "podman images after load: {ids:?}");
    assert_eq!(
        podman.diff_ids(&ids[0]),
        fixture.diff_ids,
        "podman's RootFS.Layers vs the fixture's diff ids"
    );
    c.assert_no_leaks();
}

#[test]
fn podman_saved_archives_load_in_corral() {
    if skip_unless_tools("podman_saved_archives_load_in_corral", &["podman"]) {
        return;
    }
    let podman = Podman::new();
    let fixture_file = podman.scratch("fixture.tar");
    let fixture = three_layer_docker_archive(&fixture_file, "three:v1");
    podman.ok(&["load", "-i", path_str(&fixture_file)]);
    let ids = podman.image_ids();
    assert_eq!(ids.len(), 1, "podman images after load: {ids:?}");
    podman.ok(&["tag", &ids[0], "localhost/podrt:v1"]);

    for format in ["oci-archive", "docker-archive"] {
        let file = podman.scratch(&format!("podman-{format}.tar"));
        podman.ok(&[
            "save",
            "--format",
            format,
            "-o",
            path_str(&file),
            "localhost/podrt:v1",
        ]);
        let c = Corral::new();
        let out = c.ok(&["image", "load", "-i", path_str(&file)]);
        assert!(out.contains("Loaded image"), "{format}: load output: {out}");
        assert!(
            c.has_image("localhost/podrt:v1"),
            "{format}: image ls: {:?}",
            listing(&c)
        );
        assert_three_layer_view(&c, "localhost/podrt:v1", &fixture);
        c.assert_no_leaks();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. push and pull

#[test]
fn push_rm_pull_restores_same_image() {
    if skip_unless_tools(
        "push_rm_pull_restores_same_image",
        &[REGISTRY_BIN, "skopeo"],
    ) {
        return;
    }
    let registry = Registry::start();
    let c = Corral::new();
    let archive = c.path("three.oci.tar");
    let fixture = three_layer_oci_archive(&archive, "three:v1");
    c.ok(&["image", "load", "-i", path_str(&archive)]);
    let remote = format!("{}/three:v1", registry.addr());
    c.ok(&["image", "tag", "three:v1", &remote]);
    let pushed = c.ok(&["push", "--tls-verify=false", &remote]);
    let manifest_digest = pushed
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned();
    assert!(
        manifest_digest.starts_with("sha256:"),
        "push prints the manifest digest: {pushed}"
    );
    let before = c.inspect(&remote);

    // A peer sees what was pushed.
    let seen: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]))
    .expect("skopeo inspect JSON");
    assert_eq!(
        seen["Digest"].as_str(),
        Some(manifest_digest.as_str()),
        "skopeo: {seen:#}"
    );
    assert_eq!(seen["Layers"].as_array().map(Vec::len), Some(3));
    let config: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]))
    .expect("skopeo inspect --config JSON");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(fixture.diff_ids),
        "pushed config"
    );

    c.ok(&["image", "rm", "three:v1", &remote]);
    assert!(c.images().is_empty(), "after rm: {:?}", listing(&c));
    let id = printed_id(&c.ok(&["pull", "--tls-verify=false", &remote]));
    assert_eq!(id, before.id, "pulled image id vs pushed image id");
    let after = c.inspect(&remote);
    assert_eq!(after.diff_ids(), fixture.diff_ids);
    assert_three_layer_view(&c, &remote, &fixture);

    // push NAME DEST puts it under another name.
    let dest = format!("{}/copy:v2", registry.addr());
    c.ok(&["push", "--tls-verify=false", &remote, &dest]);
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{dest}")]);
    c.assert_no_leaks();
}

#[test]
fn pull_of_skopeo_pushed_image_matches_fixture() {
    if skip_unless_tools(
        "pull_of_skopeo_pushed_image_matches_fixture",
        &[REGISTRY_BIN, "skopeo"],
    ) {
        return;
    }
    let registry = Registry::start();
    let c = Corral::new();
    let archive = c.path("three.oci.tar");
    let fixture = three_layer_oci_archive(&archive, "three:v1");
    let remote = format!("{}/by-skopeo:v1", registry.addr());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", path_str(&archive)),
        &format!("docker://{remote}"),
    ]);
    let id = printed_id(&c.ok(&["pull", "--tls-verify=false", &remote]));
    let info = c.inspect(&remote);
    assert_eq!(info.id, id);
    assert!(c.has_image(&remote), "image ls: {:?}", listing(&c));
    assert_three_layer_view(&c, &remote, &fixture);
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 5. tag, rm, prune

#[test]
fn tag_rm_prune_keep_shared_content_and_free_the_rest() {
    if skip_unless_root("tag_rm_prune_keep_shared_content_and_free_the_rest") {
        return;
    }
    let c = Corral::new();
    let tar = c.path("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let busybox_len = fs::metadata(corral_e2e::fixtures::BUSYBOX).unwrap().len();
    let id = printed_id(&c.ok(&["image", "import", path_str(&tar), "first:v1"]));

    c.ok(&["image", "tag", "first:v1", "second:v2"]);
    let images = c.images();
    for name in ["first:v1", "second:v2"] {
        let row = images
            .iter()
            .find(|i| i.is_named(name))
            .unwrap_or_else(|| panic!("after tag, image ls lacks {name}: {images:#?}"));
        assert!(same_id(&row.id, &id), "{name} has id {} not {id}", row.id);
    }

    // prune leaves referenced content alone.
    c.ok(&["image", "prune"]);
    let info = c.inspect("second:v2");
    assert!(info.layers[0].path.join("bin/busybox").is_file());
    let used_full = disk_use(&c.images_dir());

    let out = c.ok(&["image", "rm", "first:v1"]);
    assert!(
        out.contains("Untagged") && out.contains("first:v1"),
        "rm output: {out}"
    );
    assert!(!out.contains("Deleted"), "content still named: {out}");
    let names = listing(&c);
    assert!(
        !c.has_image("first:v1") && c.has_image("second:v2"),
        "{names:?}"
    );
    let info = c.inspect("second:v2");
    assert!(
        info.layers[0].path.join("bin/busybox").is_file(),
        "content kept while second:v2 names it"
    );
    assert_eq!(c.inspect(&id).id, id, "inspect by id");

    let out = c.ok(&["image", "rm", "second:v2"]);
    assert!(out.contains("Deleted: sha256:"), "rm output: {out}");
    assert!(c.images().is_empty(), "{:?}", listing(&c));
    let used_after = disk_use(&c.images_dir());
    assert!(
        used_after + busybox_len <= used_full,
        "rm of the last name should free at least busybox ({busybox_len} B): \
         {used_full} B before, {used_after} B after:\n{}",
        tree(&c.images_dir())
    );

    let (code, stderr) = c.fail(&["image", "rm", "nosuch:v9"]);
    assert_clear_error("rm of an unknown image", code, &stderr, &["nosuch"]);

    let out = c.ok(&["image", "prune"]);
    assert!(out.contains("Reclaimed"), "prune output: {out}");
    let images_dir = c.images_dir();
    let mut leftovers = Vec::new();
    for (path, meta) in walk(&images_dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let hexname = name.trim_start_matches("sha256:");
        let digest_named = hexname.len() == 64 && hexname.bytes().all(|b| b.is_ascii_hexdigit());
        if digest_named || name == "busybox" || (meta.is_file() && meta.len() > 64 * 1024) {
            leftovers.push(path);
        }
    }
    let blobs = regular_files(&images_dir.join("blobs"));
    assert!(
        leftovers.is_empty() && blobs.is_empty(),
        "after rm and prune, blobs or layers remain: {leftovers:?} {blobs:?}\n{}",
        tree(&images_dir)
    );
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 6. hostile tarballs

/// What importing a hostile tarball gave.
enum Outcome {
    /// It imported; the image as inspected.
    Imported(ImageInfo),
    /// It was refused (exit 125 with an error message).
    Refused,
}

impl Outcome {
    fn layer_paths(&self) -> Vec<PathBuf> {
        match self {
            Outcome::Imported(info) => info
                .layer_paths()
                .iter()
                .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            Outcome::Refused => Vec::new(),
        }
    }
}

fn import_hostile(c: &Corral, tar: &[u8], name: &str) -> Outcome {
    let file = c.path("hostile.tar");
    fs::write(&file, tar).unwrap();
    let out = c.cmd(&["image", "import", path_str(&file), name]);
    if out.status.success() {
        let info = c.inspect(name);
        let ok = fs::read(info.layers[0].path.join("ok")).ok();
        assert_eq!(
            ok.as_deref(),
            Some(hostile::OK_CONTENT),
            "imported {name}: the harmless `ok` file is missing from the layer"
        );
        eprintln!("hostile import {name}: imported");
        Outcome::Imported(info)
    } else {
        let (code, stderr) = corral_e2e::world::expect_failure("hostile import", out);
        assert_clear_error(
            &format!("refused import of {name}"),
            code,
            &stderr,
            &[
                "tar", "path", "link", "entry", "layer", "device", "unsafe", "outside",
            ],
        );
        assert!(!c.has_image(name), "refused but listed: {:?}", listing(c));
        eprintln!(
            "hostile import {name}: refused: {}",
            stderr.lines().next().unwrap_or_default()
        );
        Outcome::Refused
    }
}

/// Nothing named with `token` exists outside the layer directories: not anywhere in the test's
/// temp dir (root and scratch), and not in any ancestor of the root (up to `/`), where `../`
/// paths of any depth would land.
fn assert_contained(c: &Corral, token: &str, layers: &[PathBuf]) {
    let base = fs::canonicalize(c.base()).unwrap();
    let escaped: Vec<PathBuf> = walk(&base)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(token))
        })
        .filter(|p| !layers.iter().any(|l| p.starts_with(l)))
        .collect();
    assert!(
        escaped.is_empty(),
        "written outside the layer directory: {escaped:?}"
    );
    for ancestor in c.root().ancestors() {
        for prefix in ["escape-", "escape2-", "abs-escape-", "through-symlink-"] {
            let p = ancestor.join(format!("{prefix}{token}"));
            assert!(
                fs::symlink_metadata(&p).is_err(),
                "hostile tar wrote {} on the host",
                p.display()
            );
        }
    }
}

#[test]
fn import_dotdot_and_absolute_paths_stay_inside_layer() {
    if skip_unless_root("import_dotdot_and_absolute_paths_stay_inside_layer") {
        return;
    }
    let token = unique_token();
    let c = Corral::new();
    let outcome = import_hostile(&c, &hostile::dotdot_and_absolute(&token), "dotdot:v1");
    assert_contained(&c, &token, &outcome.layer_paths());
    c.assert_no_leaks();
}

#[test]
fn import_symlink_traversal_stays_inside_layer() {
    if skip_unless_root("import_symlink_traversal_stays_inside_layer") {
        return;
    }
    let sentinel = test_tempdir("sentinel");
    let sentinel_path = fs::canonicalize(sentinel.path()).unwrap();
    for target in ["/", "../../../..", path_str(&sentinel_path)] {
        let token = unique_token();
        let c = Corral::new();
        let outcome = import_hostile(
            &c,
            &hostile::symlink_then_file_through_it(target, &token),
            "symlink:v1",
        );
        assert_contained(&c, &token, &outcome.layer_paths());
        assert!(
            dir_names(&sentinel_path).is_empty(),
            "link -> {target}: written through the symlink into the host dir: {:?}",
            dir_names(&sentinel_path)
        );
        c.assert_no_leaks();
    }
}

#[test]
fn import_file_over_symlink_replaces_link_not_target() {
    if skip_unless_root("import_file_over_symlink_replaces_link_not_target") {
        return;
    }
    let sentinel = test_tempdir("sentinel");
    let host_file = fs::canonicalize(sentinel.path()).unwrap().join("host-file");
    let original = b"host original\n";
    fs::write(&host_file, original).unwrap();

    let c = Corral::new();
    let outcome = import_hostile(
        &c,
        &hostile::symlink_then_file_replacing_it(path_str(&host_file)),
        "victim:v1",
    );
    assert_eq!(
        fs::read(&host_file).unwrap(),
        original,
        "the host file behind the symlink was written"
    );
    assert_eq!(dir_names(sentinel.path()), ["host-file"]);
    if let Outcome::Imported(info) = &outcome {
        let victim = info.layers[0].path.join("victim");
        let meta = fs::symlink_metadata(&victim).expect("victim in the layer");
        assert!(
            meta.is_file(),
            "the later regular file should replace the link"
        );
        assert_eq!(fs::read(&victim).unwrap(), hostile::PAYLOAD);
    }
    c.assert_no_leaks();
}

#[test]
fn import_hardlinks_to_host_files_stay_inside_layer() {
    if skip_unless_root("import_hardlinks_to_host_files_stay_inside_layer") {
        return;
    }
    let passwd = fs::metadata("/etc/passwd").unwrap();
    let passwd_content = fs::read("/etc/passwd").unwrap();
    for target in ["/etc/passwd", "../../../etc/passwd"] {
        let c = Corral::new();
        import_hostile(&c, &hostile::hardlink_to(target), "hardlink:v1");
        let linked: Vec<PathBuf> = walk(c.base())
            .into_iter()
            .filter(|(_, m)| m.dev() == passwd.dev() && m.ino() == passwd.ino())
            .map(|(p, _)| p)
            .collect();
        assert!(
            linked.is_empty(),
            "hl -> {target}: hard link to the host's /etc/passwd: {linked:?}"
        );
        assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd.nlink());
        c.assert_no_leaks();
    }
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_content);

    // A link to a host file, then a file of the same name: must not write into the host file.
    let sentinel = test_tempdir("sentinel");
    let host_file = fs::canonicalize(sentinel.path()).unwrap().join("host-file");
    let original = b"host original\n";
    fs::write(&host_file, original).unwrap();
    let c = Corral::new();
    import_hostile(
        &c,
        &hostile::hardlink_then_overwrite(path_str(&host_file)),
        "hardlink2:v1",
    );
    assert_eq!(
        fs::read(&host_file).unwrap(),
        original,
        "written through a hard link"
    );
    assert_eq!(
        fs::metadata(&host_file).unwrap().nlink(),
        1,
        "a layer file is hard linked to the host file"
    );
    c.assert_no_leaks();
}

#[test]
fn import_device_nodes_are_not_created() {
    if skip_unless_root("import_device_nodes_are_not_created") {
        return;
    }
    let c = Corral::new();
    import_hostile(&c, &hostile::device_nodes(), "devices:v1");
    // Anywhere in the test dir (layers, staging, blobs): no device but overlay whiteouts (0:0).
    let devices: Vec<String> = walk(c.base())
        .into_iter()
        .filter(|(_, m)| {
            let t = m.file_type();
            (t.is_char_device() || t.is_block_device()) && m.rdev() != 0
        })
        .map(|(p, m)| format!("{} (rdev {:#x})", p.display(), m.rdev()))
        .collect();
    assert!(
        devices.is_empty(),
        "device nodes created from a tarball: {devices:?}"
    );
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 7. tampered archives

fn assert_tampered_load_fails(c: &Corral, archive: &Path, fixture: &ArchiveFixture) {
    let (code, stderr) = c.fail(&["image", "load", "-i", path_str(archive)]);
    assert_clear_error("load of a tampered archive", code, &stderr, &["digest"]);
    assert!(
        c.images().is_empty(),
        "tampered image visible: {:?}",
        listing(c)
    );
    let stored = files_with_sha256(c.root(), &fixture.forbidden_sha256);
    assert!(stored.is_empty(), "tampered blob kept: {stored:?}");
    let unpacked = files_with_content(c.root(), TAMPERED_CONTENT);
    assert!(
        unpacked.is_empty(),
        "tampered content unpacked: {unpacked:?}"
    );
    c.assert_no_leaks();
}

#[test]
fn load_tampered_oci_archive_fails_on_digest() {
    if skip_unless_root("load_tampered_oci_archive_fails_on_digest") {
        return;
    }
    let c = Corral::new();
    let archive = c.path("tampered.oci.tar");
    let fixture = tampered_oci_archive(&archive, "tampered:v1");
    assert_tampered_load_fails(&c, &archive, &fixture);
}

#[test]
fn load_tampered_docker_archive_fails_on_digest() {
    if skip_unless_root("load_tampered_docker_archive_fails_on_digest") {
        return;
    }
    let c = Corral::new();
    let archive = c.path("tampered.docker.tar");
    let fixture = tampered_docker_archive(&archive, "tampered:v1");
    assert_tampered_load_fails(&c, &archive, &fixture);
}

// ---------------------------------------------------------------------------------------------
// 8. a registry serving tampered content

#[test]
fn pull_of_tampered_registry_blob_fails_on_digest() {
    if skip_unless_tools(
        "pull_of_tampered_registry_blob_fails_on_digest",
        &[REGISTRY_BIN],
    ) {
        return;
    }
    let registry = Registry::start();
    let c = Corral::new();
    let archive = c.path("three.oci.tar");
    three_layer_oci_archive(&archive, "three:v1");
    c.ok(&["image", "load", "-i", path_str(&archive)]);
    let remote = format!("{}/tamper:v1", registry.addr());
    c.ok(&["image", "tag", "three:v1", &remote]);
    c.ok(&["push", "--tls-verify=false", &remote]);

    // The bottom layer (busybox) is the largest blob; corrupt it where the registry keeps it.
    let info = c.inspect(&remote);
    let by_digest = registry.blob_data_path(&info.layers[0].digest);
    let target = if by_digest.is_file() {
        by_digest
    } else {
        registry
            .blob_files()
            .into_iter()
            .max_by_key(|(_, len)| *len)
            .expect("pushed blobs in the registry")
            .0
    };
    corrupt_file(&target);

    c.ok(&["image", "rm", "three:v1", &remote]);
    assert!(c.images().is_empty(), "after rm: {:?}", listing(&c));
    let (code, stderr) = c.fail(&["pull", "--tls-verify=false", &remote]);
    assert_clear_error("pull of a tampered blob", code, &stderr, &["digest"]);
    assert!(
        c.images().is_empty(),
        "tampered image visible: {:?}",
        listing(&c)
    );
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 9. interrupted pull

#[test]
fn pull_interrupted_then_resumed_transfers_less() {
    if skip_unless_tools(
        "pull_interrupted_then_resumed_transfers_less",
        &[REGISTRY_BIN],
    ) {
        return;
    }
    const SIZE: usize = 30 << 20;
    const RATE: u64 = 5 << 20;
    let registry = Registry::start();
    let c = Corral::new();
    let tar = c.path("big.tar");
    let bytes = busybox_rootfs_with_random(SIZE, 0x5eed_cafe);
    fs::write(&tar, &bytes).unwrap();
    let diff_id = sha256_digest(&bytes);
    drop(bytes);
    c.ok(&["image", "import", path_str(&tar), "big:v1"]);
    let pushed = format!("{}/big:v1", registry.addr());
    c.ok(&["image", "tag", "big:v1", &pushed]);
    c.ok(&["push", "--tls-verify=false", &pushed]);
    let layer_size = registry
        .blob_files()
        .into_iter()
        .map(|(_, len)| len)
        .max()
        .expect("blobs in the registry");
    assert!(
        layer_size >= SIZE as u64,
        "the layer blob is {layer_size} B"
    );
    c.ok(&["image", "rm", "big:v1", &pushed]);
    assert!(c.images().is_empty(), "after rm: {:?}", listing(&c));

    // First pull, throttled, killed after ~2 s (about a third of the layer) — later if a slow
    // start has not yet brought a few MB of the layer, so that there is something to resume.
    let proxy = ThrottleProxy::start(&registry.addr(), Some(RATE));
    let remote = format!("{}/big:v1", proxy.addr());
    let mut child = c.spawn("pull1", &["pull", "--tls-verify=false", &remote]);
    std::thread::sleep(Duration::from_secs(2));
    let patience = Instant::now() + Duration::from_secs(15);
    while proxy.bytes_to_client() < 4 << 20
        && Instant::now() < patience
        && child.try_wait().expect("try_wait").is_none()
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let early_exit = child.try_wait().expect("try_wait");
    child.kill().ok();
    child.wait().expect("reap the killed pull");
    let first = proxy.bytes_to_client();
    assert!(
        early_exit.is_none(),
        "the throttled pull ended before it was killed ({early_exit:?}): stderr:\n{}",
        fs::read_to_string(c.path("pull1.err")).unwrap_or_default()
    );
    assert!(
        !c.has_image(&remote) && c.images().is_empty(),
        "a killed pull left a visible image: {:?}",
        listing(&c)
    );
    let port = proxy.port();
    drop(proxy);

    // Second pull, at full speed, through the same address.
    let proxy = ThrottleProxy::start_on(port, &registry.addr(), None);
    let id = printed_id(&c.ok(&["pull", "--tls-verify=false", &remote]));
    let second = proxy.bytes_to_client();
    eprintln!("interrupted pull: first {first} B, resumed {second} B, layer {layer_size} B");
    let info = c.inspect(&remote);
    assert_eq!(info.id, id);
    assert_eq!(info.diff_ids(), [diff_id], "resumed content is intact");
    assert!(
        second < layer_size,
        "resume not detected: the killed pull received {first} B, the second pull {second} B, \
         the layer is {layer_size} B"
    );
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 10. full disk

#[test]
fn import_on_full_disk_fails_and_leaves_no_debris() {
    if skip_unless_root("import_on_full_disk_fails_and_leaves_no_debris") {
        return;
    }
    let c = Corral::with_tmpfs_root("8m");
    let tar = c.path("big.tar");
    fs::write(&tar, busybox_rootfs_with_random(20 << 20, 0xf011)).unwrap();
    c.ok(&["image", "ls"]); // lets the store lay out its skeleton
    let skeleton: Vec<PathBuf> = regular_files(c.root());

    let (code, stderr) = c.fail(&["image", "import", path_str(&tar), "full:v1"]);
    assert_clear_error("import on a full disk", code, &stderr, &["space"]);
    assert!(
        c.images().is_empty(),
        "image visible after a failed import: {:?}",
        listing(&c)
    );
    // Zero-length files (locks) are part of a working store; anything with content that was
    // not there before the import is debris.
    let debris: Vec<String> = walk(c.root())
        .into_iter()
        .filter(|(p, m)| m.is_file() && m.len() > 0 && !skeleton.contains(p))
        .map(|(p, m)| format!("{} ({} B)", p.display(), m.len()))
        .collect();
    let used = disk_use(c.root());
    assert!(
        used < 256 * 1024 && debris.is_empty(),
        "after the failed import {used} B remain in CORRAL_ROOT; files beyond the store's \
         skeleton: {debris:?}\n{}",
        tree(c.root())
    );
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 11. bad input

#[test]
fn load_of_missing_file_fails_clearly() {
    if skip_unless_root("load_of_missing_file_fails_clearly") {
        return;
    }
    let c = Corral::new();
    let (code, stderr) = c.fail(&["image", "load", "-i", "/nonexistent"]);
    assert_clear_error_with_hint("load -i /nonexistent", code, &stderr, &["/nonexistent"]);
    assert!(c.images().is_empty());
}

#[test]
fn import_of_non_tar_fails_clearly() {
    if skip_unless_root("import_of_non_tar_fails_clearly") {
        return;
    }
    let c = Corral::new();
    let file = c.path("not-a-tarball.txt");
    fs::write(&file, "this is not a tar archive\n".repeat(100)).unwrap();
    let (code, stderr) = c.fail(&["image", "import", path_str(&file), "nottar:v1"]);
    assert_clear_error_with_hint(
        "import of a text file",
        code,
        &stderr,
        &["tar", "archive", "not-a-tarball.txt", "format"],
    );
    assert!(c.images().is_empty(), "{:?}", listing(&c));
    c.assert_no_leaks();
}

#[test]
fn pull_of_malformed_reference_fails_clearly() {
    if skip_unless_root("pull_of_malformed_reference_fails_clearly") {
        return;
    }
    let c = Corral::new();
    let (code, stderr) = c.fail(&["pull", "UPPER/Case::x"]);
    assert_clear_error_with_hint(
        "pull UPPER/Case::x",
        code,
        &stderr,
        &["UPPER/Case::x", "reference"],
    );
}

#[test]
fn pull_from_unreachable_registry_fails_fast() {
    if skip_unless_root("pull_from_unreachable_registry_fails_fast") {
        return;
    }
    let mut c = Corral::new();
    c.timeout = Duration::from_secs(30);
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let (code, stderr) = c.fail(&["pull", "--tls-verify=false", &format!("{addr}/nothing:v1")]);
    let elapsed = started.elapsed();
    assert_clear_error_with_hint(
        "pull from a closed port",
        code,
        &stderr,
        &[&addr, "connect", "refused"],
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(c.images().is_empty());
}

#[test]
fn fixtures_are_deterministic() {
    // Pure harness check (no root needed): digests are known before corral sees an archive.
    assert_eq!(busybox_rootfs_bytes(), busybox_rootfs_bytes());
    let dir = test_tempdir("fixtures");
    let a = three_layer_oci_archive(&dir.path().join("a.tar"), "x:1");
    let b = three_layer_oci_archive(&dir.path().join("b.tar"), "x:1");
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(
        fs::read(dir.path().join("a.tar")).unwrap(),
        fs::read(dir.path().join("b.tar")).unwrap()
    );
    let d = three_layer_docker_archive(&dir.path().join("d.tar"), "x:1");
    assert_eq!(a.diff_ids, d.diff_ids);
    assert_eq!(a.config_digest, d.config_digest);
}
