//! HTTPS material and the kubeconfig: corral's own CA, the server's certificate, the bearer
//! token.
//!
//! Made on first start under `DIR` (`$CORRAL_ROOT/serve/pki`): `ca.crt`/`ca.key` (a CA of
//! this installation's, ECDSA P-256, ten years), `server.crt`/`server.key` (signed by it,
//! for `localhost`, the loopback addresses, the host name and the listen address; made
//! again when those names change), `token` (32 random bytes, hex; 0600). The kubeconfig
//! written beside them points kubectl at the server with the CA and the token.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The material the server needs, loaded or made.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server's certificate chain, PEM.
    pub cert_pem: String,
    /// The server's private key, PEM.
    pub key_pem: String,
    /// The bearer token clients must send.
    pub token: String,
}

/// Why the PKI could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("making certificates: {0}")]
    Cert(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "corral-ca");
    dn.push(DnType::OrganizationName, "corral");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(p)
}

/// Writes `data` to `path` with `mode`, atomically (a temporary file renamed over it).
fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Pki {
    /// Loads the material under `dir`, making what is missing; the server certificate
    /// names `names` (host names and addresses) besides localhost and the loopback addresses.
    pub fn load_or_make(dir: &Path, names: &[String]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let ca_key_pair = if ca_key.exists() && ca_crt.exists() {
            let pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
            KeyPair::from_pem(&pem)?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&ca_crt, cert.pem().as_bytes(), 0o644)?;
            // A new CA makes any older server certificate useless.
            let _ = std::fs::remove_file(dir.join("server.crt"));
            key
        };
        let ca_pem = std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;

        let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            sans.push(h.trim().to_string());
        }
        for n in names {
            if !sans.contains(n) && !n.is_empty() && n != "0.0.0.0" && n != "::" {
                sans.push(n.clone());
            }
        }
        let (srv_crt, srv_key, srv_names) = (
            dir.join("server.crt"),
            dir.join("server.key"),
            dir.join("server.names"),
        );
        let want_names = sans.join("\n");
        let have_names = std::fs::read_to_string(&srv_names).unwrap_or_default();
        if !srv_crt.exists() || !srv_key.exists() || have_names != want_names {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(sans.clone())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "corral-apiserver");
            p.distinguished_name = dn;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let issuer = Issuer::new(ca_params()?, &ca_key_pair);
            let cert = p.signed_by(&key, &issuer)?;
            write_private(&srv_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&srv_crt, cert.pem().as_bytes(), 0o644)?;
            write_private(&srv_names, want_names.as_bytes(), 0o644)?;
        }
        let token_path = dir.join("token");
        if !token_path.exists() {
            write_private(&token_path, random_hex(32).as_bytes(), 0o600)?;
        }
        Ok(Pki {
            ca_pem,
            cert_pem: std::fs::read_to_string(&srv_crt).map_err(io(&srv_crt))?,
            key_pem: std::fs::read_to_string(&srv_key).map_err(io(&srv_key))?,
            token: std::fs::read_to_string(&token_path)
                .map_err(io(&token_path))?
                .trim()
                .to_string(),
        })
    }

    /// Writes a kubeconfig (0600) for `server` (`https://HOST:PORT`) with the CA and token.
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        let cfg = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "corral", "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": "corral-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "corral", "context": {"cluster": "corral", "user": "corral-admin", "namespace": "default"}}],
            "current-context": "corral",
            "preferences": {},
        });
        let text = serde_json::to_string_pretty(&cfg).expect("json");
        write_private(path, text.as_bytes(), 0o600)
    }

    /// A rustls server configuration for this material, offering HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            pem_blocks(&self.cert_pem, "CERTIFICATE")
                .into_iter()
                .map(rustls::pki_types::CertificateDer::from)
                .collect();
        let key_der = pem_blocks(&self.key_pem, "PRIVATE KEY")
            .into_iter()
            .next()
            .ok_or("server.key holds no PKCS#8 private key")?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// The DER contents of the PEM blocks labelled `label`.
fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(s) = rest.find(&begin) {
        let after = &rest[s + begin.len()..];
        let Some(e) = after.find(&end) else { break };
        let b64: String = after[..e].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &after[e + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_and_remade_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_make(dir.path(), &["10.0.0.1".into()]).unwrap();
        let b = Pki::load_or_make(dir.path(), &["10.0.0.1".into()]).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        assert_eq!(a.token, b.token);
        assert_eq!(a.token.len(), 64);
        let c = Pki::load_or_make(dir.path(), &["10.0.0.2".into()]).unwrap();
        assert_ne!(a.cert_pem, c.cert_pem);
        assert_eq!(a.ca_pem, c.ca_pem);
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        c.server_config().unwrap();
        let kc = dir.path().join("kubeconfig");
        c.write_kubeconfig(&kc, "https://127.0.0.1:6443").unwrap();
        assert!(std::fs::read_to_string(&kc).unwrap().contains(&c.token));
    }
}
