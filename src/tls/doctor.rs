//! The TLS doctor of `botbus check`: loads `ca_file`, `cert_file` and `key_file` and reports
//! each problem on one line naming the file, with its fix, before anything runs.

use super::inspect::{date, CertInfo, Validity};
use super::{files, verify, TlsError};
use crate::bus::TlsFiles;
use rumqttc::tokio_rustls::rustls;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// What was checked and found right.
    Fine,
    /// Works today, but needs attention (an expiry within 30 days, an unknowable issuer).
    Warning,
    /// The connection will fail.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl Finding {
    pub fn fine(text: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fine,
            text: text.into(),
        }
    }
    pub fn warning(text: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warning,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Finding {
        Finding {
            level: Level::Error,
            text: text.into(),
        }
    }
}

impl fmt::Display for Finding {
    /// One line: `tls`, `warning` or `error`, then the words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Fine => "tls",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "  {tag:<7} {}", self.text)
    }
}

/// Examines the TLS files at Unix time `now`; `tls` is whether the URL is `mqtts://`.
pub fn examine(files: &TlsFiles, tls: bool, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let any = files.ca_file.is_some() || files.cert_file.is_some();
    if !tls {
        if any {
            out.push(Finding::warning(
                "mqtt.url is not mqtts://, so ca_file, cert_file and key_file are not used",
            ));
        }
        return out;
    }
    let cas = match &files.ca_file {
        Some(ca) => examine_ca(ca, now, &mut out),
        None => {
            out.push(Finding::fine(
                "no ca_file: the broker is checked against the system's CA store",
            ));
            Vec::new()
        }
    };
    if let (Some(cert), Some(key)) = (&files.cert_file, &files.key_file) {
        let leaf = examine_cert(cert, files.ca_file.as_deref(), &cas, now, &mut out);
        examine_key(key, cert, leaf.as_ref(), &mut out);
    }
    out
}

fn load(path: &Path, out: &mut Vec<Finding>) -> Vec<CertInfo> {
    let ders = match files::certificates(path) {
        Ok(d) => d,
        Err(e) => {
            out.push(Finding::error(e.to_string()));
            return Vec::new();
        }
    };
    let mut infos = Vec::new();
    for der in ders {
        match CertInfo::parse(&der) {
            Ok(i) => infos.push(i),
            Err(detail) => out.push(Finding::error(
                TlsError::BadCertificate {
                    path: path.into(),
                    detail,
                }
                .to_string(),
            )),
        }
    }
    infos
}

/// Expired, not yet valid, or ending soon, for any certificate.
fn timing(label: &str, info: &CertInfo, now: i64, renew: &str) -> Option<Finding> {
    match info.validity_at(now) {
        Validity::Expired => Some(Finding::error(format!(
            "{label} ({}) expired on {}; {renew}",
            info.subject,
            date(info.not_after)
        ))),
        Validity::NotYetValid => Some(Finding::error(format!(
            "{label} ({}) is not valid until {}, and this computer's clock says {}; set the \
             clock (timedatectl, NTP)",
            info.subject,
            date(info.not_before),
            date(now)
        ))),
        Validity::EndingSoon => Some(Finding::warning(format!(
            "{label} ({}) expires on {}, in {} days; {renew} before then",
            info.subject,
            date(info.not_after),
            (info.not_after - now) / 86_400
        ))),
        Validity::Valid => None,
    }
}

fn examine_ca(ca: &Path, now: i64, out: &mut Vec<Finding>) -> Vec<CertInfo> {
    let cas = load(ca, out);
    for info in &cas {
        let label = format!("ca_file {}", ca.display());
        match timing(
            &label,
            info,
            now,
            "make a new CA and reissue what it signed",
        ) {
            Some(f) => out.push(f),
            None => out.push(Finding::fine(format!(
                "{label}: {}, valid until {}",
                info.subject,
                date(info.not_after)
            ))),
        }
    }
    cas
}

fn examine_cert(
    cert: &Path,
    ca_file: Option<&Path>,
    cas: &[CertInfo],
    now: i64,
    out: &mut Vec<Finding>,
) -> Option<CertInfo> {
    let leaf = load(cert, out).into_iter().next()?;
    let label = format!("cert_file {}", cert.display());
    let renew = "make a new one (`botbus certs robot DIR ID`, or the openssl x509 -req line again)";
    let timing = timing(&label, &leaf, now, renew);
    let fine_dates = timing.is_none();
    out.extend(timing);
    if let Some(ca) = ca_file.filter(|_| !cas.is_empty()) {
        if cas.iter().any(|c| leaf.signed_by(c)) {
            out.push(Finding::fine(format!(
                "{label}: {} (X.509 v{}), signed by {} in ca_file{}",
                leaf.subject,
                leaf.version,
                leaf.issuer,
                if fine_dates {
                    format!(", valid until {}", date(leaf.not_after))
                } else {
                    String::new()
                }
            )));
        } else if cas.iter().any(|c| c.subject == leaf.issuer) {
            out.push(Finding::error(format!(
                "{label} ({}) names {} as its issuer, but that CA in ca_file {} did not sign \
                 it (another CA with the same name?); reissue it with the CA in ca_file",
                leaf.subject,
                leaf.issuer,
                ca.display()
            )));
        } else {
            // The broker may trust a separate client CA, which we cannot see from here.
            out.push(Finding::warning(format!(
                "{label} ({}) is signed by {}, which is not in ca_file {}; the broker refuses \
                 it unless its cafile holds that CA: reissue it with the CA in ca_file",
                leaf.subject,
                leaf.issuer,
                ca.display()
            )));
        }
    }
    Some(leaf)
}

fn examine_key(key: &Path, cert: &Path, leaf: Option<&CertInfo>, out: &mut Vec<Finding>) {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let (signer, form) = match verify::signing_key(key, &provider) {
        Ok(k) => k,
        Err(e) => return out.push(Finding::error(e.to_string())),
    };
    let Some(leaf) = leaf else { return };
    out.push(if verify::is_key_of(signer.as_ref(), leaf) {
        Finding::fine(format!(
            "key_file {}: {form} key of cert_file",
            key.display()
        ))
    } else {
        Finding::error(
            TlsError::KeyMismatch {
                cert: cert.into(),
                key: key.into(),
            }
            .to_string(),
        )
    });
}

#[cfg(test)]
mod tests;
