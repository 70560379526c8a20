//! Making the certificates with rcgen: X.509 v3, ECDSA P-256 keys written as PKCS#8, a CA
//! limited to signing leaves, and leaves with the extensions TLS stacks check (SANs and
//! serverAuth for the broker, clientAuth for robots and fleet identities).

use super::names::{check_ca_name, Host, Identity, Role};
use super::CertsError;
use crate::tls::inspect::{day, AltName, CertInfo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far back a certificate's validity starts: the machine that makes it and the broker
/// or robot that checks it rarely agree on the time to the second, and a certificate that
/// is "not yet valid" for a minute fails a deployment for no reason.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// When a certificate is valid: from about now for a number of days.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    now: SystemTime,
    days: u32,
}

impl Validity {
    /// `days` from `now` (1 to [`MAX_DAYS`](super::MAX_DAYS)).
    pub fn new(now: SystemTime, days: u32) -> Result<Validity, CertsError> {
        if !(1..=super::MAX_DAYS).contains(&days) {
            return Err(CertsError::BadDays(days));
        }
        Ok(Validity { now, days })
    }

    fn not_after(&self) -> SystemTime {
        self.now + Duration::from_secs(u64::from(self.days) * 86_400)
    }

    /// The day (UTC, `YYYY-MM-DD`) on which it expires.
    pub fn until(&self) -> String {
        date(self.not_after())
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = (self.now - CLOCK_SKEW).into();
        params.not_after = self.not_after().into();
    }
}

/// `YYYY-MM-DD` (UTC) of `t`.
fn date(t: SystemTime) -> String {
    day(t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64))
}

/// A new certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    /// Without the key: a debug print must not leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A subject of `cn`, with the role as its OU.
fn params(cn: &str, role: Role, validity: &Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationalUnitName, role.unit());
    params.distinguished_name = dn;
    validity.apply(&mut params);
    params
}

/// A self-signed CA named `name`: CA:TRUE with a path length of 0 (it signs leaves, never
/// another CA), key usage keyCertSign and cRLSign.
pub fn new_ca(name: &str, validity: &Validity) -> Result<Issued, CertsError> {
    check_ca_name(name)?;
    let mut params = params(name, Role::Ca, validity);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A CA loaded from its certificate and key, ready to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    name: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// The CA in `cert_pem` with its key `key_pem`. Refuses a certificate that is not a
    /// CA and a key that is not the certificate's, which would sign leaves nobody trusts.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertsError> {
        let der = first_certificate(cert_pem).map_err(CertsError::CaCert)?;
        let info = CertInfo::parse(&der).map_err(CertsError::CaCert)?;
        if !info.is_ca {
            return Err(CertsError::NotACa);
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertsError::CaKey(e.to_string()))?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(CertsError::CaKeyMismatch);
        }
        let name = info.common_name.unwrap_or_default();
        // rcgen copies the CA's subject and key identifier from the certificate itself, so
        // each leaf's issuer and authority key identifier match it exactly.
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key)
            .map_err(|e| CertsError::CaCert(e.to_string()))?;
        Ok(Ca { issuer, name })
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The broker's server certificate: CN = the first host, every host as a SAN (IP
    /// addresses as IP SANs, names as DNS SANs: TLS clients check the name in the URL
    /// against these, never the CN), EKU serverAuth.
    pub fn broker(&self, hosts: &[Host], validity: &Validity) -> Result<Issued, CertsError> {
        let first = hosts.first().ok_or(CertsError::NoHost)?;
        let mut params = params(&first.to_string(), Role::Broker, validity);
        for host in hosts {
            params.subject_alt_names.push(match host {
                Host::Ip(ip) => SanType::IpAddress(*ip),
                Host::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
            });
        }
        self.leaf(params, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A robot's or fleet identity's client certificate: CN = its name, EKU clientAuth.
    pub fn client(&self, id: &Identity, validity: &Validity) -> Result<Issued, CertsError> {
        let params = params(id.name(), id.role(), validity);
        self.leaf(params, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        mut params: CertificateParams,
        purpose: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, CertsError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        // Lets OpenSSL (mosquitto) pick the right CA certificate when a CA file holds several.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DER of the first `CERTIFICATE` block of `pem`.
fn first_certificate(pem: &str) -> Result<Vec<u8>, String> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| e.to_string())?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err("no `BEGIN CERTIFICATE` block".to_string())
}

/// What an existing certificate file holds, for the CLI's hints and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub common_name: Option<String>,
    /// The role `botbus certs` wrote into its OU, if it made it.
    pub role: Option<Role>,
    /// Its DNS and IP SANs, in order.
    pub hosts: Vec<String>,
}

/// The first certificate in `pem`, summarized; `None` when there is none that parses.
pub fn summary(pem: &str) -> Option<Summary> {
    let der = first_certificate(pem).ok()?;
    let info = crate::tls::inspect::CertInfo::parse(&der).ok()?;
    Some(Summary {
        role: info.org_units.iter().find_map(|u| Role::from_unit(u)),
        hosts: info
            .alt_names
            .iter()
            .map(|n| match n {
                AltName::Dns(d) => d.clone(),
                AltName::Ip(ip) => ip.to_string(),
            })
            .collect(),
        common_name: info.common_name,
    })
}
