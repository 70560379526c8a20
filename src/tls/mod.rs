//! TLS to the broker as robot teams set it up: the client certificate sent as given (v1 or
//! v3), keys in every form OpenSSL writes, the server checked as strictly as rustls does,
//! and every failure explained in plain words with its fix.
//!
//! - [`files`]: reading the PEM files.
//! - [`inspect`]: what a certificate says (version, names, dates).
//! - [`diagnose`]: the plain-words reason for a refused handshake.
//! - [`verify`]: the server verifier that remembers what it saw, and the client identity.
//! - [`doctor`]: `botbus check`'s look at the files; [`probe`]: its look at the broker.

pub mod diagnose;
pub mod doctor;
pub mod files;
pub mod inspect;
pub mod probe;
pub mod verify;

use crate::bus::TlsFiles;
use inspect::CertInfo;
use rumqttc::tokio_rustls::rustls;
use rumqttc::tokio_rustls::TlsConnector;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// A TLS file that cannot be used, named, with what to do about it.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid PEM: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("{0}: no certificate in this file (expected a -----BEGIN CERTIFICATE----- block)")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key in this file (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey(PathBuf),
    #[error("{p}: the private key is encrypted with a passphrase, which a daemon cannot type; decrypt it once with `openssl pkey -in {p} -out {p}.plain` (it asks for the passphrase), `chmod 600 {p}.plain`, and set key_file to it", p = .0.display())]
    EncryptedKey(PathBuf),
    #[error("{path}: cannot use this private key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("{path}: cannot read this certificate: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{key} is not the private key of {cert}; use the key that made the certificate's request (`openssl x509 -noout -pubkey -in {cert}` and `openssl pkey -pubout -in {key}` must print the same)", key = .key.display(), cert = .cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: not usable as a CA: {detail}")]
    Ca { path: PathBuf, detail: String },
    #[error("mqtts:// without ca_file, and the system has no CA certificates; set mqtt.ca_file to the CA that signed the broker's certificate")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Everything needed to open TLS connections to the broker, and to explain failures.
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    verifier: Arc<verify::Recording>,
    ca_file: Option<PathBuf>,
    /// Our own certificate, for messages about the broker refusing it.
    identity: Option<CertInfo>,
}

impl ClientTls {
    /// Loads the files and builds the rustls configuration. Hostname and chain
    /// verification are always on: there is deliberately no setting to turn them off.
    pub fn new(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        // The provider is named, not looked up, so a dependency enabling a second rustls
        // backend cannot turn this into a runtime panic.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(verify::Recording::new(
            roots(files.ca_file.as_deref())?,
            provider.clone(),
        )?);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            // Not a weaker check: `Recording` runs rustls's own WebPKI verifier and only
            // keeps what it saw, so a refusal can be explained.
            .with_custom_certificate_verifier(verifier.clone());
        let (config, identity) = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                let id = verify::Identity::load(cert, key, &provider)?;
                let info = id.info.clone();
                (builder.with_client_cert_resolver(Arc::new(id)), Some(info))
            }
            _ => (builder.with_no_client_auth(), None),
        };
        Ok(ClientTls {
            config: Arc::new(config),
            verifier,
            ca_file: files.ca_file.clone(),
            identity,
        })
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.config.clone())
    }

    /// The chain the broker presented in the last handshake, leaf first.
    pub fn server_chain(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.verifier.last_chain()
    }

    /// A failed handshake (or the broker's alert right after it) in plain words.
    pub fn explain(&self, err: &std::io::Error, host: &str) -> String {
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            return err.to_string();
        };
        match tls {
            rustls::Error::InvalidCertificate(e) => diagnose::server_certificate(
                &self.verifier.last_chain(),
                host,
                self.ca_file.as_deref(),
                e,
                inspect::now_s(),
            ),
            rustls::Error::AlertReceived(alert) => diagnose::alert(*alert, self.identity.as_ref()),
            other => other.to_string(),
        }
    }
}

/// The trust anchors: the CA file if given, else the system's store.
fn roots(ca: Option<&std::path::Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for c in files::certificates(ca)? {
                roots.add(c).map_err(|e| TlsError::Ca {
                    path: ca.into(),
                    detail: e.to_string(),
                })?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                // One odd system certificate must not cost the rest.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(roots)
}
