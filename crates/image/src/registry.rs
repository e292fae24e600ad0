//! Pull and push over the OCI distribution API, with `oci-client` speaking the protocol
//! (token and basic auth, chunked and monolithic uploads, ranged downloads).
//!
//! What corral adds: layers move in parallel and each is unpacked as soon as it has arrived
//! (while others still download); a download goes to `ingest/<hex>.partial` and is resumed with
//! a `Range` request after an interruption; every blob is hashed as it arrives and becomes
//! visible only if it matches its digest; manifests and configs are size-bounded and verified;
//! a registry that sends more bytes than the manifest declared is cut off. Layer `urls`
//! (foreign layers) are never followed: descriptors are rebuilt from digests alone.
//!
//! `localhost` and 127.0.0.0/8 registries, and those the user marks with `--tls-verify=false`,
//! are spoken to over plain HTTP; all others over HTTPS.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::digest::{Digest, Hasher};
use crate::manifest::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::progress::Progress;
use crate::reference::ImageName;
use crate::store::{Image, Store, StoreError, MAX_METADATA_BYTES};

/// How many layers move at once.
const PARALLEL_LAYERS: usize = 4;

/// Errors of registry operations.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry or the connection to it failed.
    #[error("{op} {target}")]
    Remote {
        /// What was being done.
        op: &'static str,
        /// On what.
        target: String,
        /// The cause.
        #[source]
        err: OciDistributionError,
    },
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry's answer is not acceptable.
    #[error("registry answer for {target}: {reason}")]
    BadAnswer {
        /// What was asked.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: std::io::Error,
    },
    /// The credentials file is unreadable.
    #[error("credentials file {0}")]
    Auth(PathBuf, #[source] serde_json::Error),
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl RegistryError {
    /// Whether the registry refused the credentials (or their absence).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            RegistryError::Remote {
                err: OciDistributionError::UnauthorizedError { .. }
                    | OciDistributionError::AuthenticationFailure(_),
                ..
            }
        ) || matches!(self, RegistryError::Remote { err, .. } if err.to_string().contains("401"))
    }
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

fn remote(
    op: &'static str,
    target: impl ToString,
) -> impl FnOnce(OciDistributionError) -> RegistryError {
    let target = target.to_string();
    move |err| RegistryError::Remote { op, target, err }
}

/// Settings of a registry operation.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Verify TLS; `false` speaks plain HTTP to the registry.
    pub tls_verify: bool,
    /// The credentials file (`corral login` writes it).
    pub auth_file: PathBuf,
}

/// The credentials file, in docker's `config.json` shape.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    /// registry -> credentials.
    #[serde(default)]
    pub auths: std::collections::BTreeMap<String, AuthEntry>,
}

/// One registry's credentials.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    pub auth: String,
}

impl AuthFile {
    /// Reads the file (absent = empty).
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| RegistryError::Auth(path.into(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(err) => Err(RegistryError::Io {
                what: "reading",
                path: path.into(),
                err,
            }),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec_pretty(self).expect("serializable");
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        res.map_err(|err| RegistryError::Io {
            what: "writing",
            path: path.into(),
            err,
        })
    }

    /// Credentials for `registry`.
    pub fn auth_for(&self, registry: &str) -> RegistryAuth {
        use base64::Engine;
        let Some(e) = self.auths.get(registry) else {
            return RegistryAuth::Anonymous;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&e.auth) else {
            return RegistryAuth::Anonymous;
        };
        let raw = String::from_utf8_lossy(&raw).into_owned();
        match raw.split_once(':') {
            Some((u, p)) => RegistryAuth::Basic(u.to_owned(), p.to_owned()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Sets credentials for `registry`.
    pub fn set(&mut self, registry: &str, user: &str, password: &str) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auths.insert(registry.to_owned(), AuthEntry { auth });
    }
}

fn install_crypto() {
    // reqwest is built without a default rustls provider; install ring's once.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client_for(name: &ImageName, opts: &RegistryOptions) -> Client {
    install_crypto();
    let protocol = if !opts.tls_verify || name.is_local_registry() {
        ClientProtocol::HttpsExcept(vec![name.registry().to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        use_monolithic_push: true,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
}

const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// What a pull brought.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest digest.
    pub digest: Digest,
    /// The image id.
    pub id: Digest,
}

/// Pulls `name` into the store and names it so.
pub async fn pull(
    store: &Store,
    name: &ImageName,
    opts: &RegistryOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let _content = store.content_lock()?;
    let client = client_for(name, opts);
    let auth = AuthFile::read(&opts.auth_file)?.auth_for(name.registry());
    let reference = name.reference().clone();
    let (mut body, mut digest) = fetch_manifest(&client, &reference, &auth).await?;
    if manifest::is_index(None, &body) {
        let index: ImageIndex = parse(&body, name)?;
        let (d, _) = manifest::pick_platform(&index).ok_or_else(|| RegistryError::BadAnswer {
            target: name.to_string(),
            reason: "the index has no linux/amd64 image".into(),
        })?;
        let sub = reference.clone_with_digest(d.to_string());
        (body, digest) = fetch_manifest(&client, &sub, &auth).await?;
        if digest != d {
            return Err(RegistryError::BadAnswer {
                target: name.to_string(),
                reason: format!("manifest {d} arrived with digest {digest}"),
            });
        }
    }
    let m: ImageManifest = parse(&body, name)?;
    let config_digest: Digest = parse_digest(m.config().digest().as_ref(), name)?;
    if !store.has_blob(&config_digest) {
        if m.config().size() > MAX_METADATA_BYTES {
            return Err(RegistryError::BadAnswer {
                target: name.to_string(),
                reason: format!("config of {} bytes", m.config().size()),
            });
        }
        let mut buf = Vec::new();
        client
            .pull_blob(&reference, config_digest.to_string().as_str(), &mut buf)
            .await
            .map_err(remote("fetching config", &config_digest))?;
        store.put_blob(&buf, Some(&config_digest))?;
    }
    let cfg: oci_spec::image::ImageConfiguration = parse(&store.read_blob(&config_digest)?, name)?;
    let diff_ids: Vec<Digest> = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| parse_digest(d, name))
        .collect::<Result<_>>()?;
    if diff_ids.len() != m.layers().len() {
        return Err(RegistryError::BadAnswer {
            target: name.to_string(),
            reason: format!(
                "{} layers but {} diff ids",
                m.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let mut jobs = Vec::new();
    for (l, diff) in m.layers().iter().zip(diff_ids) {
        let d = parse_digest(l.digest().as_ref(), name)?;
        jobs.push((d, l.size(), diff));
    }
    let client = &client;
    let reference = &reference;
    futures_util::stream::iter(jobs.into_iter().map(|(d, size, diff)| {
        let store = store.clone();
        let progress = progress.clone();
        async move {
            let id = d.short().to_owned();
            if store.has_layer(&diff) && store.has_blob(&d) {
                progress.begin(&id, "layer", Some(size));
                progress.end(&id, "already exists");
                return Ok(());
            }
            if !store.has_blob(&d) {
                // Two pulls of one blob must not append to one partial file.
                let (s, ld) = (store.clone(), d.clone());
                let _lock = tokio::task::spawn_blocking(move || s.ingest_lock(&ld))
                    .await
                    .map_err(|e| RegistryError::Task(e.to_string()))??;
                if !store.has_blob(&d) {
                    download(client, reference, &store, &d, size, progress.as_ref()).await?;
                }
            }
            progress.end(&id, "unpacking");
            let (s, bd, dd) = (store.clone(), d.clone(), diff.clone());
            tokio::task::spawn_blocking(move || s.ensure_layer(&bd, &dd))
                .await
                .map_err(|e| RegistryError::Task(e.to_string()))??;
            progress.end(&id, "done");
            Ok::<(), RegistryError>(())
        }
    }))
    .buffer_unordered(PARALLEL_LAYERS)
    .try_collect::<Vec<()>>()
    .await?;
    store.put_blob(&body, Some(&digest))?;
    store.set_name(name, &digest)?;
    Ok(Pulled {
        digest,
        id: config_digest,
    })
}

async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
) -> Result<(Vec<u8>, Digest)> {
    let (body, _) = client
        .pull_manifest_raw(reference, auth, MANIFEST_TYPES)
        .await
        .map_err(remote("fetching manifest of", reference))?;
    if body.len() as u64 > MAX_METADATA_BYTES {
        return Err(RegistryError::BadAnswer {
            target: reference.to_string(),
            reason: format!("manifest of {} bytes", body.len()),
        });
    }
    let digest = Digest::of(&body);
    if let Some(want) = reference.digest() {
        if want != digest.to_string() {
            return Err(StoreError::DigestMismatch {
                expected: parse_digest(want, reference)?,
                actual: digest,
            }
            .into());
        }
    }
    Ok((body.to_vec(), digest))
}

fn parse<T: serde::de::DeserializeOwned>(b: &[u8], target: impl ToString) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| RegistryError::BadAnswer {
        target: target.to_string(),
        reason: format!("unparsable JSON: {e}"),
    })
}

fn parse_digest(s: &str, target: impl ToString) -> Result<Digest> {
    s.parse().map_err(|_| RegistryError::BadAnswer {
        target: target.to_string(),
        reason: format!("bad digest {s:?}"),
    })
}

/// Downloads one blob into `ingest/`, resuming what an earlier attempt left there.
async fn download(
    client: &Client,
    reference: &Reference,
    store: &Store,
    d: &Digest,
    size: u64,
    progress: &dyn Progress,
) -> Result<()> {
    let path = store.ingest_path(d);
    let io = |what: &'static str| {
        let path = path.clone();
        move |err| RegistryError::Io { what, path, err }
    };
    let id = d.short().to_owned();
    progress.begin(&id, "layer", Some(size));
    let mut hasher = Hasher::default();
    let mut have = 0u64;
    if let Ok(mut f) = std::fs::File::open(&path) {
        use std::io::Read;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io("reading"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        have = hasher.len();
    }
    if have > size {
        have = 0;
        hasher = Hasher::default();
    }
    let target = d.to_string();
    let stream = if have > 0 && have < size {
        match client
            .pull_blob_stream_partial(reference, target.as_str(), have, None)
            .await
            .map_err(remote("downloading", d))?
        {
            oci_client::client::BlobResponse::Partial(s) => {
                progress.advance(&id, have);
                s
            }
            oci_client::client::BlobResponse::Full(s) => {
                have = 0;
                hasher = Hasher::default();
                s
            }
        }
    } else if have == size {
        // Complete already; fall through to verification with an empty stream.
        oci_client::client::SizedStream {
            content_length: Some(0),
            digest_header_value: None,
            stream: futures_util::stream::empty().boxed(),
        }
    } else {
        client
            .pull_blob_stream(reference, target.as_str())
            .await
            .map_err(remote("downloading", d))?
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(have == 0)
        .append(have > 0)
        .open(&path)
        .await
        .map_err(io("opening"))?;
    let mut stream = stream.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io("downloading into"))?;
        hasher.update(&chunk);
        if hasher.len() > size {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(RegistryError::BadAnswer {
                target: d.to_string(),
                reason: format!("blob larger than the {size} bytes the manifest declares"),
            });
        }
        file.write_all(&chunk).await.map_err(io("writing"))?;
        progress.advance(&id, chunk.len() as u64);
    }
    file.flush().await.map_err(io("writing"))?;
    drop(file);
    let actual = hasher.finish();
    if actual != *d {
        let _ = std::fs::remove_file(&path);
        return Err(StoreError::DigestMismatch {
            expected: d.clone(),
            actual,
        }
        .into());
    }
    store.install_verified_ingest(d)?;
    Ok(())
}

/// Pushes `image` to `dest`; returns the manifest digest.
pub async fn push(
    store: &Store,
    image: &Image,
    dest: &ImageName,
    opts: &RegistryOptions,
    progress: Arc<dyn Progress>,
) -> Result<Digest> {
    let client = client_for(dest, opts);
    let auth = AuthFile::read(&opts.auth_file)?.auth_for(dest.registry());
    let reference = dest.reference().clone();
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .map_err(remote("authenticating to", dest.registry()))?;
    let mut blobs = image.layer_digests()?;
    blobs.push(image.id.clone());
    let client = &client;
    let reference = &reference;
    futures_util::stream::iter(blobs.into_iter().map(|d| {
        let progress = progress.clone();
        let path = store.blob_path(&d);
        async move {
            let id = d.short().to_owned();
            let size = tokio::fs::metadata(&path)
                .await
                .map_err(|_| StoreError::MissingBlob(d.clone()))?
                .len();
            progress.begin(&id, "blob", Some(size));
            if client
                .blob_exists(reference, &d.to_string())
                .await
                .map_err(remote("checking blob", &d))?
            {
                progress.end(&id, "already exists");
                return Ok(());
            }
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|err| RegistryError::Io {
                    what: "opening",
                    path: path.clone(),
                    err,
                })?;
            let p2 = progress.clone();
            let id2 = id.clone();
            let stream = futures_util::stream::unfold(file, move |mut f| {
                let p2 = p2.clone();
                let id2 = id2.clone();
                async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 1 << 20];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            p2.advance(&id2, n as u64);
                            Some((Ok(bytes::Bytes::from(buf)), f))
                        }
                        Err(e) => Some((Err(OciDistributionError::IoError(e)), f)),
                    }
                }
            });
            client
                .push_blob_stream(reference, stream, &d.to_string(), Some(size))
                .await
                .map_err(remote("uploading", &d))?;
            progress.end(&id, "pushed");
            Ok::<(), RegistryError>(())
        }
    }))
    .buffer_unordered(PARALLEL_LAYERS)
    .try_collect::<Vec<()>>()
    .await?;
    let body = store.read_blob(&image.digest)?;
    let media_type = image
        .manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    let ct = http_header(&media_type)?;
    client
        .push_manifest_raw(reference, body, ct)
        .await
        .map_err(remote("uploading manifest to", reference))?;
    Ok(image.digest.clone())
}

fn http_header(v: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(v).map_err(|_| RegistryError::BadAnswer {
        target: "manifest".into(),
        reason: format!("media type {v:?} is not a valid header"),
    })
}

/// Checks credentials against a registry (a token exchange where the registry uses tokens)
/// and stores them.
pub async fn login(
    registry: &str,
    user: &str,
    password: &str,
    opts: &RegistryOptions,
) -> Result<()> {
    let probe =
        ImageName::parse(&format!("{registry}/library/probe:latest")).map_err(StoreError::from)?;
    let client = client_for(&probe, opts);
    let auth = RegistryAuth::Basic(user.to_owned(), password.to_owned());
    client
        .auth(probe.reference(), &auth, RegistryOperation::Pull)
        .await
        .map_err(remote("logging in to", registry))?;
    // With basic auth nothing was checked yet: ask for something. A probe repository that does
    // not exist answers 404 to good credentials and 401 to bad ones.
    if let Err(
        err @ (OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)),
    ) = client
        .list_tags(probe.reference(), &auth, Some(1), None)
        .await
    {
        return Err(remote("logging in to", registry)(err));
    }
    let mut file = AuthFile::read(&opts.auth_file)?;
    file.set(registry, user, password);
    file.write(&opts.auth_file)
}
