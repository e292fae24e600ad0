//! End-to-end tests of corral against registries that need more than a plain pull or push
//! (docs/cli-images.md): one that demands credentials (`login`, `logout`, `--authfile`), and a
//! multi-arch image index from which a pull must pick linux/amd64. Every test runs the real
//! binary as root against Debian's docker-registry on loopback; see `corral_e2e` for the harness.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use corral_e2e::fixtures::{busybox_rootfs_tar, multi_arch_oci_layout};
use corral_e2e::process::run_ok;
use corral_e2e::registry::{HTPASSWD_BIN, REGISTRY_BIN};
use corral_e2e::world::printed_id;
use corral_e2e::{path_str, sha256_digest, skip_unless_tools, Corral, Registry};

/// corral's own failures exit 125 (docker's convention, docs/cli-images.md).
const EXIT_CORRAL: i32 = 125;
const SKOPEO_TIMEOUT: Duration = Duration::from_secs(180);

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-corral-pw";

/// A failure of corral's own (exit 125, an `error:` line) whose stderr mentions at least one of
/// `needles` (case-insensitive).
fn assert_corral_error(what: &str, (code, stderr): (i32, String), needles: &[&str]) {
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

/// The last non-empty line of stdout.
fn last_line(stdout: &str) -> String {
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// login, logout, --authfile

#[test]
fn login_gates_push_and_pull_with_credentials() {
    if skip_unless_tools(
        "login_gates_push_and_pull_with_credentials",
        &[REGISTRY_BIN, HTPASSWD_BIN],
    ) {
        return;
    }
    let registry = Registry::start_with_auth(USER, PASSWORD);
    let reg = registry.addr();
    let remote = format!("{reg}/auth/bb:v1");
    let c = Corral::new();
    let tar = c.path("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let id = printed_id(&c.ok(&["image", "import", path_str(&tar), &remote]));
    let auth_json = c.root().join("auth.json");

    // No credentials: the registry says 401 and corral says so.
    assert_corral_error(
        "push without login",
        c.fail(&["push", &remote]),
        &["401", "authoriz"],
    );

    // A wrong password is refused at login, and nothing usable is stored.
    let (code, stderr) = c.fail(&["login", "-u", USER, "-p", "wrong", &reg]);
    assert_eq!(code, EXIT_CORRAL, "login with a wrong password:\n{stderr}");
    assert_corral_error(
        "push after a refused login",
        c.fail(&["push", &remote]),
        &["401", "authoriz"],
    );

    // The right password on stdin.
    let out = c.cmd_with_stdin(
        &["login", "-u", USER, "--password-stdin", &reg],
        format!("{PASSWORD}\n").into_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Login Succeeded"),
        "login --password-stdin: {}",
        corral_e2e::process::describe(&out)
    );
    let meta = fs::metadata(&auth_json)
        .unwrap_or_else(|e| panic!("{} after login: {e}", auth_json.display()));
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "mode of {}",
        auth_json.display()
    );
    let stored = fs::read_to_string(&auth_json).expect("read auth.json");
    assert!(
        stored.contains(&reg),
        "auth.json does not name the registry {reg}:\n{stored}"
    );

    // Logged in: the push goes through.
    let pushed = last_line(&c.ok(&["push", &remote]));
    assert!(
        pushed.starts_with("sha256:"),
        "push prints the manifest digest, got {pushed:?}"
    );

    // Another world: refused on its own, allowed with the first world's credentials file.
    let other = Corral::new();
    assert_corral_error(
        "pull without credentials",
        other.fail(&["pull", &remote]),
        &["401", "authoriz"],
    );
    let pulled = printed_id(&other.ok(&["pull", "--authfile", path_str(&auth_json), &remote]));
    assert_eq!(
        pulled, id,
        "image id pulled with --authfile vs the pushed image"
    );
    assert_eq!(other.inspect(&remote).id, id);
    assert!(
        !other.root().join("auth.json").exists(),
        "pull --authfile must not write the puller's own auth.json"
    );

    // Logged out: push is refused again.
    c.ok(&["logout", &reg]);
    if let Ok(left) = fs::read_to_string(&auth_json) {
        assert!(
            !left.contains(&reg),
            "auth.json still names {reg} after logout:\n{left}"
        );
    }
    assert_corral_error(
        "push after logout",
        c.fail(&["push", &remote]),
        &["401", "authoriz"],
    );
    c.assert_no_leaks();
    other.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// multi-arch index

#[test]
fn pull_of_multi_arch_index_picks_linux_amd64() {
    if skip_unless_tools(
        "pull_of_multi_arch_index_picks_linux_amd64",
        &[REGISTRY_BIN, "skopeo"],
    ) {
        return;
    }
    let registry = Registry::start();
    let c = Corral::new();
    let layout = c.path("multi-layout");
    let fixture = multi_arch_oci_layout(&layout, "multi");
    assert_ne!(fixture.arm64.config_digest, fixture.amd64.config_digest);
    let remote = format!("{}/multi/img:1", registry.addr());
    run_ok(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:{}", path_str(&layout), fixture.ref_name),
            &format!("docker://{remote}"),
        ],
        SKOPEO_TIMEOUT,
    );
    // The registry holds the index itself, as written.
    let raw = run_ok(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{remote}"),
        ],
        SKOPEO_TIMEOUT,
    );
    assert_eq!(
        sha256_digest(raw.as_bytes()),
        fixture.index_digest,
        "skopeo should have pushed the index unchanged:\n{raw}"
    );

    let id = printed_id(&c.ok(&["pull", &remote]));
    assert_eq!(
        id, fixture.amd64.config_digest,
        "pulled image id should be the linux/amd64 config digest (arm64 is {})",
        fixture.arm64.config_digest
    );
    let info = c.inspect(&remote);
    assert_eq!(info.id, fixture.amd64.config_digest);
    assert_eq!(
        info.raw["config"]["architecture"].as_str(),
        Some("amd64"),
        "config architecture in inspect: {:#}",
        info.raw
    );
    assert_eq!(
        info.diff_ids(),
        std::slice::from_ref(&fixture.amd64.diff_id),
        "diff ids in inspect: {:#}",
        info.raw
    );
    assert_eq!(
        info.layers[0].digest, fixture.amd64.layer_digest,
        "layer blob digest in inspect"
    );
    let images = c.images();
    assert_eq!(
        images.len(),
        1,
        "one image after the pull: {:?}",
        images.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    assert!(
        info.layers[0].path.join("bin/busybox").is_file(),
        "the amd64 layer (busybox rootfs) is unpacked at {}",
        info.layers[0].path.display()
    );
    assert!(
        !info.layers[0].path.join("etc/arch").exists(),
        "the arm64 layer's content must not be there"
    );
    c.assert_no_leaks();
}
