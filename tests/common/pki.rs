//! Certificates for the TLS tests, made by botbus's own `certs` module (what
//! `botbus certs` writes: X.509 v3, ECDSA P-256 keys as PKCS#8).

use botbus::certs::{new_ca, Ca, Host, Identity, Issued, Role, Validity};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A year from now.
pub fn year() -> Validity {
    Validity::new(SystemTime::now(), 365).unwrap()
}

/// `days` from `secs` after 1970 (UTC).
pub fn validity_from(secs: u64, days: u32) -> Validity {
    Validity::new(UNIX_EPOCH + Duration::from_secs(secs), days).unwrap()
}

/// A CA named `name`: its certificate's PEM, and the CA ready to sign.
pub fn ca(name: &str) -> (String, Ca) {
    let issued = new_ca(name, &year()).unwrap();
    let ca = Ca::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    (issued.cert_pem, ca)
}

/// A broker certificate naming `hosts`, for a year.
pub fn broker(ca: &Ca, hosts: &[&str]) -> Issued {
    let hosts: Vec<Host> = hosts.iter().map(|h| Host::parse(h).unwrap()).collect();
    ca.broker(&hosts, &year()).unwrap()
}

/// A robot's client certificate, CN = `id`.
pub fn robot(ca: &Ca, id: &str, validity: &Validity) -> Issued {
    ca.client(&Identity::new(Role::Robot, id).unwrap(), validity)
        .unwrap()
}
