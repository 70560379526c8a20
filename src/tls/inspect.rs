//! What a certificate says about itself (version, names, validity, issuer, key), read with
//! x509-parser, which unlike webpki also reads the X.509 v1 certificates OpenSSL makes by
//! default, so the doctor can say what is wrong with them.

use std::fmt;
use std::net::IpAddr;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// A subjectAltName entry that can name a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for AltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AltName::Dns(d) => write!(f, "DNS:{d}"),
            AltName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// The facts of one certificate the doctor reasons about.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// 1 or 3 (2 is never seen in practice).
    pub version: u32,
    /// `CN=r1`, or the whole name when it has no CN.
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    /// The subject's OU values (`botbus certs` records the role there).
    pub org_units: Vec<String>,
    pub alt_names: Vec<AltName>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    /// The subject public key's bits, to match against a private key.
    pub public_key: Vec<u8>,
    /// The DER itself, kept so a signature can be checked against an issuer.
    der: Vec<u8>,
}

impl CertInfo {
    /// Reads a DER certificate; the error is x509-parser's, in words.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        // A malformed SAN extension is reported as no names: it names nothing usable.
        let alt_names = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(AltName::Dns(d.to_string())),
                    GeneralName::IPAddress(b) => ip_of(b).map(AltName::Ip),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let org_units = cert
            .subject()
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok().map(str::to_string))
            .collect();
        Ok(CertInfo {
            common_name,
            org_units,
            version: cert.version().0 + 1,
            subject: name_of(cert.subject()),
            issuer: name_of(cert.issuer()),
            alt_names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            der: der.to_vec(),
        })
    }

    /// Whether a client connecting to `host` (from the broker URL) accepts these names.
    /// Only subjectAltName counts: TLS clients stopped falling back to the CN long ago.
    pub fn names_host(&self, host: &str) -> bool {
        let ip: Option<IpAddr> = host.trim_matches(['[', ']']).parse().ok();
        self.alt_names.iter().any(|n| match (n, ip) {
            (AltName::Ip(a), Some(b)) => *a == b,
            (AltName::Dns(d), None) => dns_matches(d, host),
            _ => false,
        })
    }

    /// Whether `issuer` signed this certificate (its key verifies our signature).
    pub fn signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, me)), Ok((_, them))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(them.public_key())).is_ok()
    }

    pub fn names(&self) -> String {
        if self.alt_names.is_empty() {
            return "none".into();
        }
        let names: Vec<String> = self.alt_names.iter().map(|n| n.to_string()).collect();
        names.join(", ")
    }
}

/// Where a certificate stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid,
    /// Valid, but ending within the warning window.
    EndingSoon,
    Expired,
}

/// Expiry this close is worth a warning: certificates are renewed by hand on robots.
pub const WARN_BEFORE_S: i64 = 30 * 24 * 3600;

impl CertInfo {
    pub fn validity_at(&self, now: i64) -> Validity {
        if now < self.not_before {
            Validity::NotYetValid
        } else if now > self.not_after {
            Validity::Expired
        } else if self.not_after - now < WARN_BEFORE_S {
            Validity::EndingSoon
        } else {
            Validity::Valid
        }
    }
}

/// A Unix time as a calendar date and time, for messages.
pub fn date(secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(t) => {
            let d = t.to_datetime();
            format!("{} {:02}:{:02} UTC", d.date(), d.hour(), d.minute())
        }
        // Out of the calendar's range: `day` says so in seconds.
        Err(_) => day(secs),
    }
}

/// A Unix time as a calendar day, `YYYY-MM-DD` (UTC).
pub fn day(secs: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map(|t| t.to_datetime().date().to_string())
        .unwrap_or_else(|_| format!("{secs} s after 1970"))
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// `CN=r1` when there is a CN (what people call their certificates), else the whole name.
fn name_of(n: &x509_parser::x509::X509Name<'_>) -> String {
    match n.iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        Some(cn) => format!("CN={cn}"),
        None => n.to_string(),
    }
}

/// RFC 6125 matching: case-insensitive, a `*` only as the whole leftmost label.
fn dns_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (
        pattern.trim_end_matches('.').to_ascii_lowercase(),
        host.trim_end_matches('.').to_ascii_lowercase(),
    );
    match p.strip_prefix("*.") {
        Some(rest) => h
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => p == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn cert(names: &[&str]) -> CertInfo {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        CertInfo::parse(params.self_signed(&key).unwrap().der()).unwrap()
    }

    #[test]
    fn names_are_matched_as_tls_clients_match_them() {
        let c = cert(&["broker.example", "*.robots.example", "10.0.0.5", "::1"]);
        assert_eq!(c.version, 3);
        assert!(c.names_host("broker.example"));
        assert!(c.names_host("BROKER.example."));
        assert!(c.names_host("a.robots.example"));
        assert!(!c.names_host("a.b.robots.example"));
        assert!(!c.names_host("robots.example"));
        assert!(c.names_host("10.0.0.5"));
        assert!(c.names_host("[::1]"));
        assert!(!c.names_host("10.0.0.6"));
        assert!(!c.names_host("other.example"));
        assert_eq!(
            c.names(),
            "DNS:broker.example, DNS:*.robots.example, IP:10.0.0.5, IP:::1"
        );
    }

    #[test]
    fn validity_has_a_warning_window_before_expiry() {
        let c = cert(&["x"]);
        assert_eq!(c.validity_at(c.not_before - 1), Validity::NotYetValid);
        assert_eq!(c.validity_at(c.not_after + 1), Validity::Expired);
        assert_eq!(c.validity_at(c.not_after - 3600), Validity::EndingSoon);
        assert_eq!(
            c.validity_at(c.not_after - WARN_BEFORE_S - 1),
            Validity::Valid
        );
    }

    #[test]
    fn a_self_signed_certificate_is_signed_by_itself_and_not_by_another() {
        let (a, b) = (cert(&["a"]), cert(&["b"]));
        assert!(a.signed_by(&a));
        assert!(!a.signed_by(&b));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(CertInfo::parse(b"not a certificate").is_err());
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
    }
}
