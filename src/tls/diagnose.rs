//! Why a TLS handshake with the broker failed, in plain words with the fix: which
//! certificate, what is wrong with it (v1, no subjectAltName, another name, expired, not
//! yet valid, unknown CA, refused by the broker), and the command that mends it.

use super::inspect::{date, CertInfo, Validity};
use rumqttc::tokio_rustls::rustls;
use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::CertificateDer;
use std::path::Path;

/// How to reissue a broker certificate for `host`: with botbus, or with the openssl line
/// of mosquitto-tls(7) plus the extension it lacks.
pub fn reissue(host: &str) -> String {
    let kind = if host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        "IP"
    } else {
        "DNS"
    };
    format!(
        "reissue it with `botbus certs broker DIR --host {host}`, or add \
         `-extfile <(printf 'subjectAltName={kind}:{host}')` to the `openssl x509 -req` line"
    )
}

/// The broker's certificate was refused by our verifier: say why.
pub fn server_certificate(
    chain: &[CertificateDer<'_>],
    host: &str,
    ca_file: Option<&Path>,
    err: &CertificateError,
    now: i64,
) -> String {
    let Some(leaf) = chain.first() else {
        return format!("the broker's certificate was refused: {err}");
    };
    let info = match CertInfo::parse(leaf) {
        Ok(info) => info,
        Err(e) => return format!("the broker's certificate cannot be read ({e})"),
    };
    let mut problems = problems_of_server(&info, host, now);
    if problems.is_empty() {
        // Nothing wrong with the certificate alone: the chain or its signature is.
        problems.push(match err {
            CertificateError::UnknownIssuer => format!(
                "the broker's certificate ({}) is signed by {}, which is not in {}; set \
                 mqtt.ca_file to the CA certificate that signed it",
                info.subject,
                info.issuer,
                trust_store(ca_file)
            ),
            other => format!(
                "the broker's certificate ({}) was refused: {other}",
                info.subject
            ),
        });
    }
    problems.join("; and ")
}

fn trust_store(ca_file: Option<&Path>) -> String {
    match ca_file {
        Some(p) => format!("ca_file {}", p.display()),
        None => "the system's CA store (no mqtt.ca_file set)".into(),
    }
}

/// Every reason a client connecting to `host` refuses this server certificate that the
/// certificate itself shows, each with its fix; empty when it looks right.
pub fn problems_of_server(info: &CertInfo, host: &str, now: i64) -> Vec<String> {
    let who = format!("the broker's certificate ({})", info.subject);
    let mut out = Vec::new();
    if info.version < 3 {
        out.push(format!(
            "{who} is X.509 v{}, which has no subjectAltName, so no client can check that \
             it names {host}; {}",
            info.version,
            reissue(host)
        ));
    } else if info.alt_names.is_empty() {
        out.push(format!(
            "{who} has no subjectAltName; clients check {host} against subjectAltName only, \
             not the CN; {}",
            reissue(host)
        ));
    } else if !info.names_host(host) {
        out.push(format!(
            "{who} names {}, not {host} (the host in mqtt.url); use one of those names in \
             mqtt.url, or {}",
            info.names(),
            reissue(host)
        ));
    }
    match info.validity_at(now) {
        Validity::Expired => out.push(format!(
            "{who} expired on {}; {}",
            date(info.not_after),
            reissue(host)
        )),
        Validity::NotYetValid => out.push(format!(
            "{who} is not valid until {}, and this computer's clock says {}; set the clock \
             (timedatectl, NTP) or reissue it",
            date(info.not_before),
            date(now)
        )),
        Validity::Valid | Validity::EndingSoon => {}
    }
    out
}

/// The broker ended the handshake with an alert: what it is telling us.
pub fn alert(alert: AlertDescription, identity: Option<&CertInfo>) -> String {
    let ours = identity.map(|i| {
        format!(
            "our client certificate ({}, issued by {})",
            i.subject, i.issuer
        )
    });
    match (alert, ours) {
        (AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure, None) => {
            "the broker requires a client certificate (alert: certificate required); set \
              mqtt.cert_file and mqtt.key_file"
                .into()
        }
        (AlertDescription::CertificateExpired, Some(ours)) => format!(
            "the broker refused {ours}: it has expired; make a new one \
             (`botbus certs robot DIR ID`)"
        ),
        (
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::HandshakeFailure
            | AlertDescription::AccessDenied,
            Some(ours),
        ) => format!(
            "the broker refused {ours} (alert: {alert:?}); it must be signed by the CA in \
             the broker's cafile"
        ),
        (AlertDescription::ProtocolVersion, _) => {
            "the broker offers no TLS version botbus accepts (1.2 or 1.3)".into()
        }
        (other, _) => format!("the broker ended the TLS handshake (alert: {other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn cert(names: &[&str]) -> (CertificateDer<'static>, CertInfo) {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        let info = CertInfo::parse(&der).unwrap();
        (der, info)
    }

    #[test]
    fn a_certificate_for_another_name_says_which_names_and_how_to_reissue() {
        let (der, info) = cert(&["broker.example"]);
        let now = info.not_before + 10;
        let m = server_certificate(
            &[der],
            "10.0.0.5",
            None,
            &CertificateError::NotValidForName,
            now,
        );
        assert!(m.contains("names DNS:broker.example, not 10.0.0.5"), "{m}");
        assert!(m.contains("botbus certs broker DIR --host 10.0.0.5"), "{m}");
        assert!(m.contains("subjectAltName=IP:10.0.0.5"), "{m}");
    }

    #[test]
    fn an_expired_certificate_gives_its_date_and_a_clock_problem_names_the_clock() {
        let (der, info) = cert(&["localhost"]);
        let m = server_certificate(
            std::slice::from_ref(&der),
            "localhost",
            None,
            &CertificateError::Expired,
            info.not_after + 86_400,
        );
        assert!(
            m.contains(&format!("expired on {}", date(info.not_after))),
            "{m}"
        );
        let m = server_certificate(
            &[der],
            "localhost",
            None,
            &CertificateError::NotValidYet,
            info.not_before - 86_400,
        );
        assert!(m.contains("not valid until"), "{m}");
        assert!(m.contains("timedatectl"), "{m}");
    }

    #[test]
    fn an_unknown_issuer_names_the_issuer_and_the_trust_store() {
        let (der, info) = cert(&["localhost"]);
        let m = server_certificate(
            &[der],
            "localhost",
            Some(Path::new("/etc/botbus/ca.crt")),
            &CertificateError::UnknownIssuer,
            info.not_before + 10,
        );
        assert!(
            m.contains("which is not in ca_file /etc/botbus/ca.crt"),
            "{m}"
        );
        assert!(m.contains("set mqtt.ca_file"), "{m}");
    }

    #[test]
    fn the_broker_refusing_us_is_told_apart_from_us_having_no_certificate() {
        let (_, info) = cert(&["r1"]);
        let m = alert(AlertDescription::CertificateRequired, None);
        assert!(m.contains("set mqtt.cert_file and mqtt.key_file"), "{m}");
        let m = alert(AlertDescription::UnknownCA, Some(&info));
        assert!(
            m.contains("the broker refused our client certificate (CN="),
            "{m}"
        );
        assert!(m.contains("the broker's cafile"), "{m}");
    }

    #[test]
    fn an_empty_chain_or_garbage_is_still_a_sentence() {
        let m = server_certificate(&[], "h", None, &CertificateError::BadEncoding, 0);
        assert!(m.starts_with("the broker's certificate was refused"), "{m}");
        let junk = CertificateDer::from(vec![1u8, 2, 3]);
        let m = server_certificate(&[junk], "h", None, &CertificateError::BadEncoding, 0);
        assert!(
            m.starts_with("the broker's certificate cannot be read"),
            "{m}"
        );
    }
}
