//! The doctor against certificates made for each test by `crate::certs`, written to real
//! files.

use super::*;
use crate::certs::{new_ca, Ca, Identity, Role, Validity};
use crate::tls::inspect::now_s;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn year() -> Validity {
    Validity::new(SystemTime::now(), 365).unwrap()
}

fn ca(name: &str) -> (String, Ca) {
    let issued = new_ca(name, &year()).unwrap();
    let ca = Ca::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    (issued.cert_pem, ca)
}

/// A robot's certificate and key for CN `cn`; `expired` makes it 2019-01-01 to 2020-01-01.
fn client(ca: &Ca, cn: &str, expired: bool) -> (String, String) {
    let validity = if expired {
        Validity::new(UNIX_EPOCH + Duration::from_secs(1_546_300_800), 365).unwrap()
    } else {
        year()
    };
    let id = Identity::new(Role::Robot, cn).unwrap();
    let issued = ca.client(&id, &validity).unwrap();
    (issued.cert_pem, issued.key_pem)
}

fn files(ca: &Path, cert: &Path, key: &Path) -> TlsFiles {
    TlsFiles {
        ca_file: Some(ca.into()),
        cert_file: Some(cert.into()),
        key_file: Some(key.into()),
    }
}

fn levels(found: &[Finding]) -> Vec<Level> {
    found.iter().map(|f| f.level).collect()
}

#[test]
fn good_files_are_each_reported_fine() {
    let d = Dir::new();
    let (ca_pem, issuer) = ca("fleet CA");
    let (cert, key) = client(&issuer, "r1", false);
    let found = examine(
        &files(
            &d.write("ca.crt", &ca_pem),
            &d.write("r1.crt", &cert),
            &d.write("r1.key", &key),
        ),
        true,
        now_s(),
    );
    assert_eq!(levels(&found), [Level::Fine; 3], "{found:#?}");
    assert!(found[1]
        .text
        .contains("CN=r1 (X.509 v3), signed by CN=fleet CA in ca_file"));
    assert!(
        found[2].text.ends_with("PKCS#8 key of cert_file"),
        "{found:#?}"
    );
}

#[test]
fn a_mismatched_key_an_expired_certificate_and_a_wrong_ca_come_in_one_run() {
    let d = Dir::new();
    let (ca_pem, _) = ca("fleet CA");
    let (_, other) = ca("someone else's CA");
    let (cert, _) = client(&other, "r1", true);
    let (_, stray_key) = client(&other, "r2", false);
    let (ca, crt, key) = (
        d.write("ca.crt", &ca_pem),
        d.write("r1.crt", &cert),
        d.write("r1.key", &stray_key),
    );
    let found = examine(&files(&ca, &crt, &key), true, now_s());
    let lines: Vec<String> = found.iter().map(|f| f.to_string()).collect();
    let crt_s = crt.display().to_string();
    let key_s = key.display().to_string();
    assert_eq!(
        levels(&found),
        [Level::Fine, Level::Error, Level::Warning, Level::Error],
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "  error   cert_file {crt_s} (CN=r1) expired on 2020-01-01"
        )),
        "{lines:#?}"
    );
    assert!(
        lines[2].contains(&format!(
            "cert_file {crt_s} (CN=r1) is signed by CN=someone else's CA, which is not in ca_file"
        )),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with(&format!(
            "  error   {key_s} is not the private key of {crt_s}"
        )),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

#[test]
fn a_certificate_ending_within_30_days_is_a_warning_with_its_date() {
    let d = Dir::new();
    let (ca_pem, issuer) = ca("fleet CA");
    let (cert, key) = client(&issuer, "r1", false);
    let crt = d.write("r1.crt", &cert);
    let leaf = CertInfo::parse(&files::certificates(&crt).unwrap()[0]).unwrap();
    let found = examine(
        &files(&d.write("ca.crt", &ca_pem), &crt, &d.write("r1.key", &key)),
        true,
        leaf.not_after - 5 * 86_400,
    );
    let soon = found
        .iter()
        .find(|f| f.level == Level::Warning)
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(soon.text.contains("expires on"), "{soon:?}");
    assert!(soon.text.contains("in 5 days"), "{soon:?}");
}

#[test]
fn unreadable_files_and_encrypted_keys_are_errors_naming_the_file() {
    let d = Dir::new();
    let (ca_pem, issuer) = ca("fleet CA");
    let (cert, _) = client(&issuer, "r1", false);
    let locked = d.write(
        "r1.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let found = examine(
        &files(
            &d.write("ca.crt", &ca_pem),
            &d.write("r1.crt", &cert),
            &locked,
        ),
        true,
        now_s(),
    );
    let last = found.last().unwrap();
    assert_eq!(last.level, Level::Error);
    assert!(
        last.text.contains("is encrypted with a passphrase"),
        "{last:?}"
    );
    let found = examine(
        &files(
            Path::new("/nonexistent/ca.crt"),
            &d.write("x", &cert),
            &locked,
        ),
        true,
        now_s(),
    );
    assert!(
        found[0]
            .text
            .starts_with("/nonexistent/ca.crt: cannot read"),
        "{found:#?}"
    );
}

#[test]
fn tls_files_on_a_plain_url_are_a_warning_and_nothing_else() {
    let found = examine(
        &files(Path::new("a"), Path::new("b"), Path::new("c")),
        false,
        0,
    );
    assert_eq!(levels(&found), [Level::Warning]);
}
