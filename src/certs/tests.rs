//! Every certificate is parsed back with x509-parser and checked for what TLS stacks and
//! mosquitto look at: version 3, CA flag, key usages, SANs, common name, EKU, validity,
//! and the issuer's signature.

use super::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Version};

/// 2025-01-01T00:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

fn validity(days: u32) -> Validity {
    Validity::new(now(), days).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(block.label, "CERTIFICATE");
    block.contents
}

/// Parses `pem` (kept alive by the caller's `der`) and checks it is X.509 v3.
fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.version(), X509Version::V3);
    cert
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap()
        .to_string()
}

fn eku(cert: &X509Certificate<'_>) -> (bool, bool) {
    let e = cert.extended_key_usage().unwrap().unwrap().value;
    (e.server_auth, e.client_auth)
}

fn ca() -> (Issued, Ca) {
    let issued = new_ca("ACME robots CA", &validity(CA_DAYS)).unwrap();
    let ca = Ca::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    (issued, ca)
}

fn hosts(names: &[&str]) -> Vec<Host> {
    names.iter().map(|h| Host::parse(h).unwrap()).collect()
}

/// Checks `leaf` is a non-CA v3 certificate issued and signed by `ca_pem`'s CA.
fn assert_signed_leaf(leaf: &X509Certificate<'_>, ca_pem: &str) {
    let ca_der = der(ca_pem);
    let ca = parse(&ca_der);
    assert_eq!(leaf.issuer(), ca.subject());
    leaf.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA's key");
    assert!(!leaf.is_ca());
    let bc = leaf.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca, "basicConstraints CA:FALSE is written explicitly");
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    // The authority key identifier names the CA's subject key identifier.
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("the CA has a subject key identifier");
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
            _ => None,
        })
        .map(|k| k.0.to_vec())
        .expect("the leaf has an authority key identifier");
    assert_eq!(aki, ski);
}

/// `err` is about the user's input, starts with `start` and says `why`.
fn assert_refused(err: CertsError, start: &str, why: &str) {
    assert!(err.is_input(), "{err}");
    let text = err.to_string();
    assert!(text.starts_with(start) && text.contains(why), "{text}");
}

#[test]
fn a_new_ca_is_a_self_signed_v3_ca_that_may_sign_only_leaves() {
    let (issued, _) = ca();
    let d = der(&issued.cert_pem);
    let cert = parse(&d);
    assert_eq!(cn(&cert), "ACME robots CA");
    assert_eq!(cert.issuer(), cert.subject());
    cert.verify_signature(None).expect("self-signed");
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(cert.extended_key_usage().unwrap().is_none());
}

#[test]
fn a_broker_certificate_has_every_host_as_a_san_and_is_for_servers() {
    let (ca_issued, ca) = ca();
    let issued = ca
        .broker(
            &hosts(&["broker.example", "10.0.0.5", "fd00::5"]),
            &validity(LEAF_DAYS),
        )
        .unwrap();
    let d = der(&issued.cert_pem);
    let cert = parse(&d);
    assert_eq!(cn(&cert), "broker.example");
    let sans = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(
        sans,
        &vec![
            GeneralName::DNSName("broker.example"),
            GeneralName::IPAddress(&[10, 0, 0, 5]),
            GeneralName::IPAddress(&"fd00::5".parse::<std::net::Ipv6Addr>().unwrap().octets()),
        ]
    );
    assert_eq!(eku(&cert), (true, false));
    assert_signed_leaf(&cert, &ca_issued.cert_pem);
}

#[test]
fn robot_and_fleet_certificates_carry_their_name_as_cn_for_client_auth() {
    let (ca_issued, ca) = ca();
    for (role, name) in [(Role::Robot, "r1"), (Role::Fleet, "ops-laptop")] {
        let id = Identity::new(role, name).unwrap();
        let issued = ca.client(&id, &validity(LEAF_DAYS)).unwrap();
        let d = der(&issued.cert_pem);
        let cert = parse(&d);
        assert_eq!(cn(&cert), name);
        assert_eq!(eku(&cert), (false, true));
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert_signed_leaf(&cert, &ca_issued.cert_pem);
        let s = summary(&issued.cert_pem).unwrap();
        assert_eq!(s.common_name.as_deref(), Some(name));
        assert_eq!(s.role, Some(role));
    }
}

#[test]
fn each_key_is_pkcs8_pem_and_belongs_to_its_certificate() {
    let (ca_issued, ca) = ca();
    let robot = ca
        .client(&Identity::new(Role::Robot, "r1").unwrap(), &validity(30))
        .unwrap();
    for issued in [&ca_issued, &robot] {
        assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = rcgen::KeyPair::from_pem(&issued.key_pem).unwrap();
        let d = der(&issued.cert_pem);
        let cert = parse(&d);
        assert_eq!(
            key.public_key_raw(),
            &*cert.public_key().subject_public_key.data
        );
    }
    assert!(
        !format!("{robot:?}").contains("PRIVATE KEY"),
        "a debug print never shows the key"
    );
}

#[test]
fn two_certificates_for_one_name_have_their_own_keys_and_serials() {
    let (_, ca) = ca();
    let id = Identity::new(Role::Robot, "r1").unwrap();
    let a = ca.client(&id, &validity(30)).unwrap();
    let b = ca.client(&id, &validity(30)).unwrap();
    assert_ne!(a.key_pem, b.key_pem);
    let (da, db) = (der(&a.cert_pem), der(&b.cert_pem));
    assert_ne!(parse(&da).serial, parse(&db).serial);
}

#[test]
fn validity_starts_an_hour_back_for_clock_skew_and_lasts_the_given_days() {
    let (_, ca) = ca();
    let issued = ca.broker(&hosts(&["localhost"]), &validity(825)).unwrap();
    let d = der(&issued.cert_pem);
    let v = parse(&d).validity().clone();
    let t0 = now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(v.not_before.timestamp(), t0 - 3600);
    assert_eq!(v.not_after.timestamp(), t0 + 825 * 86_400);
    assert_eq!(validity(825).until(), "2027-04-06");
    for bad in [0, MAX_DAYS + 1] {
        let err = Validity::new(now(), bad).unwrap_err();
        assert!(err.is_input());
        assert_eq!(
            err.to_string(),
            format!("{bad} days is not a validity from 1 to 36500 days")
        );
    }
}

#[test]
fn hosts_are_ip_addresses_or_host_names_and_anything_else_is_refused_with_why() {
    assert_eq!(
        Host::parse("10.0.0.5").unwrap(),
        Host::Ip("10.0.0.5".parse().unwrap())
    );
    assert_eq!(
        Host::parse("::1").unwrap(),
        Host::Ip("::1".parse().unwrap())
    );
    for name in [
        "localhost",
        "broker.example",
        "mqtt-1.fleet.example.com",
        "b2",
    ] {
        assert_eq!(Host::parse(name).unwrap(), Host::Dns(name.to_string()));
    }
    for (bad, why) in [
        ("", "1 to 253 characters"),
        ("bro ker", "letters, digits and `-`"),
        ("broker_1.example", "letters, digits and `-`"),
        ("a..b", "letters, digits and `-`"),
        ("broker.example.", "letters, digits and `-`"),
        ("https://broker", "letters, digits and `-`"),
        ("-b.example", "cannot start or end with `-`"),
        ("*.example.com", "wildcards are not supported"),
        ("10.0.0.256", "cannot end in a number"),
    ] {
        let err = Host::parse(bad).unwrap_err();
        assert_refused(
            err,
            &format!("`{bad}` is not a host name or IP address: "),
            why,
        );
    }
    let long = format!("{}.example", "a".repeat(64));
    assert!(Host::parse(&long).is_err());
    let (_, ca) = ca();
    let err = ca.broker(&[], &validity(1)).unwrap_err();
    assert!(err.is_input(), "{err}");
}

#[test]
fn identities_are_valid_as_a_robot_files_id_and_fit_a_common_name() {
    for good in ["r1", "robot_7-b", "R2D2", &"x".repeat(64)] {
        let id = Identity::new(Role::Robot, good).unwrap();
        assert_eq!((id.name(), id.role()), (good, Role::Robot));
    }
    for (bad, why) in [
        ("r 1", "as in a robot file's `id`"),
        ("r/1", "as in a robot file's `id`"),
        ("r+", "as in a robot file's `id`"),
        ("", "as in a robot file's `id`"),
        (&"x".repeat(65), "at most 64 characters"),
        ("ca", "name the CA's and the broker's files"),
        ("broker", "name the CA's and the broker's files"),
    ] {
        let err = Identity::new(Role::Fleet, bad).unwrap_err();
        assert_refused(err, &format!("`{bad}` is not a valid fleet name: "), why);
    }
    assert!(new_ca("", &validity(1)).unwrap_err().is_input());
    assert!(new_ca("CA\nx", &validity(1)).unwrap_err().is_input());
}

#[test]
fn a_ca_is_loaded_only_as_a_ca_certificate_with_its_own_pkcs8_key() {
    let (a, ca) = ca();
    let (b, _) = super::tests::ca();
    assert_eq!(ca.name(), "ACME robots CA");
    let wrong_key = Ca::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
    assert!(
        matches!(wrong_key, CertsError::CaKeyMismatch),
        "{wrong_key}"
    );
    let leaf = ca
        .client(&Identity::new(Role::Robot, "r1").unwrap(), &validity(1))
        .unwrap();
    let not_ca = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(matches!(not_ca, CertsError::NotACa), "{not_ca}");
    let garbage = Ca::from_pem("hello", &a.key_pem).unwrap_err();
    assert!(matches!(garbage, CertsError::CaCert(_)), "{garbage}");
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    let bad_key = Ca::from_pem(&a.cert_pem, sec1).unwrap_err();
    assert!(matches!(bad_key, CertsError::CaKey(_)), "{bad_key}");
    assert!(bad_key.to_string().contains("PKCS#8"), "{bad_key}");
    for e in [wrong_key, not_ca, garbage, bad_key] {
        assert!(!e.is_input(), "{e}");
    }
}

#[test]
fn a_summary_reads_back_the_name_role_and_hosts_of_a_certificate() {
    let (a, ca) = ca();
    let broker = ca
        .broker(&hosts(&["broker.example", "10.0.0.5"]), &validity(1))
        .unwrap();
    assert_eq!(
        summary(&broker.cert_pem),
        Some(Summary {
            common_name: Some("broker.example".into()),
            role: Some(Role::Broker),
            hosts: vec!["broker.example".into(), "10.0.0.5".into()],
        })
    );
    assert_eq!(summary(&a.cert_pem).and_then(|s| s.role), Some(Role::Ca));
    assert_eq!(summary("not a certificate"), None);
}
