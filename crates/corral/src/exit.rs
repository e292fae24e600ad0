//! Exit codes (docker's conventions) and how errors are shown: the whole cause chain once, then
//! a hint of what to do.

/// corral's own failure.
pub const CORRAL_FAILURE: i32 = 125;

/// An exit with a given code whose message (if any) was already printed: the workload's own
/// code, or docker's 126/127.
#[derive(Debug)]
pub struct Code(pub i32);

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Code {}

/// Prints `err` with its causes and a hint; returns the exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if let Some(Code(c)) = err.downcast_ref::<Code>() {
        return *c;
    }
    // The workload's own start failures keep docker's codes (126: cannot run, 127: not found).
    if let Some(e) = err.downcast_ref::<corral_engine::EngineError>() {
        let code = e.exit_code();
        if code != CORRAL_FAILURE {
            eprintln!("error: {}", corral_engine::containers::chain(e));
            return code;
        }
    }
    let mut msg = format!("error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    eprintln!("{msg}");
    if let Some(h) = hint(err) {
        eprintln!("hint: {h}");
    }
    CORRAL_FAILURE
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    let root: &(dyn std::error::Error + 'static) = err.as_ref();
    if corral_image::store::is_disk_full(root) {
        return Some(
            "the disk holding the state root is full: free space, or run `corral image prune`",
        );
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    return Some(
                        "corral needs root for its state directory: run it as root or set --root",
                    )
                }
                std::io::ErrorKind::NotFound => {
                    return Some("check the path: no such file or directory")
                }
                _ => {}
            }
        }
        if cause
            .downcast_ref::<corral_image::reference::NameError>()
            .is_some()
        {
            return Some("image names are lowercase, e.g. busybox, busybox:1.36, localhost:5000/team/app@sha256:<64 hex>");
        }
        if let Some(corral_image::unpack::UnpackError::NotTar) = cause.downcast_ref() {
            return Some("`image import` takes a root filesystem tarball (tar, tar.gz or tar.zst); for `podman save` output use `image load`");
        }
        if let Some(corral_image::StoreError::NotFound(_)) = cause.downcast_ref() {
            return Some("`corral image ls` lists the images here; `corral pull` fetches one");
        }
        if let Some(corral_image::StoreError::DigestMismatch { .. }) = cause.downcast_ref() {
            return Some("the content is corrupt or was tampered with; nothing of it was kept");
        }
        if cause
            .downcast_ref::<corral_image::archive::ArchiveError>()
            .is_some()
        {
            return Some("`corral image load` reads docker-archive and OCI-archive tarballs, as `podman save` and `skopeo copy` write them");
        }
        if let Some(e) = cause.downcast_ref::<corral_image::registry::RegistryError>() {
            if e.is_unauthorized() {
                return Some("the registry refused the credentials: `corral login REGISTRY` (or --authfile FILE) with a user allowed to do this");
            }
            return Some("check the registry address; use --tls-verify=false for a plain-HTTP registry, `corral login` for one that needs credentials");
        }
    }
    None
}
