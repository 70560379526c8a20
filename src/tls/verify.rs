//! The two ends of certificate handling in a handshake: [`Recording`] verifies the broker
//! exactly as rustls's WebPKI verifier does and remembers the chain it was shown, so a
//! refusal can be explained; [`Identity`] presents our client certificate as given.

use super::inspect::CertInfo;
use super::{files, TlsError};
use rumqttc::tokio_rustls::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// rustls's WebPKI server verifier, plus a memory of the last chain it saw.
#[derive(Debug)]
pub struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    last: Mutex<Vec<CertificateDer<'static>>>,
}

impl Recording {
    pub fn new(
        roots: rustls::RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Recording, TlsError> {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Recording {
            inner,
            last: Mutex::new(Vec::new()),
        })
    }

    pub fn last_chain(&self) -> Vec<CertificateDer<'static>> {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut last) = self.last.lock() {
            *last = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Our client certificate and key. rustls's `with_client_auth_cert` parses the
/// certificate with webpki, which refuses the X.509 v1 certificates that
/// `openssl x509 -req` makes (mosquitto-tls(7)'s recipe). Checking a client certificate is
/// the broker's job, so it is sent unchanged; we check only that the key is its key.
#[derive(Debug)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

impl Identity {
    pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Identity, TlsError> {
        let chain = files::certificates(cert)?;
        let info = CertInfo::parse(&chain[0]).map_err(|detail| TlsError::BadCertificate {
            path: cert.into(),
            detail,
        })?;
        let (signer, _) = signing_key(key, provider)?;
        if !is_key_of(signer.as_ref(), &info) {
            return Err(TlsError::KeyMismatch {
                cert: cert.into(),
                key: key.into(),
            });
        }
        Ok(Identity {
            key: Arc::new(CertifiedKey::new(chain, signer)),
            info,
        })
    }
}

/// The private key in `path`, ready to sign, and the form it was written in.
pub fn signing_key(
    path: &Path,
    provider: &CryptoProvider,
) -> Result<(Arc<dyn SigningKey>, &'static str), TlsError> {
    let der = files::private_key(path)?;
    let form = match &der {
        PrivateKeyDer::Pkcs1(_) => "PKCS#1 RSA",
        PrivateKeyDer::Sec1(_) => "SEC1 EC",
        _ => "PKCS#8",
    };
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::BadKey {
            path: path.into(),
            detail: e.to_string(),
        })?;
    Ok((signer, form))
}

/// Whether `signer` is the key of `cert`: its SubjectPublicKeyInfo holds the certificate's
/// public key bits. A key that cannot show its public half is given the benefit of the
/// doubt; the broker's handshake then decides.
pub fn is_key_of(signer: &dyn SigningKey, cert: &CertInfo) -> bool {
    use x509_parser::prelude::FromDer;
    signer.public_key().is_none_or(|spki| {
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
            .is_ok_and(|(_, k)| k.subject_public_key.data.as_ref() == cert.public_key.as_slice())
    })
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // Whatever the broker hints, we have one identity; it decides.
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
