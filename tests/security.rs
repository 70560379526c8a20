//! TLS, mutual X.509 authentication and username/password login against a real mosquitto,
//! with certificates made for each run (botbus's `certs` module) and a password file made by mosquitto_passwd.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let (ca_pem, ca) = pki::ca("botbus test CA");
    let server = pki::broker(&ca, &["localhost", "127.0.0.1"]);
    let client = pki::robot(&ca, "robot-r1", &pki::year());
    let (other_pem, _) = pki::ca("some other CA");
    let w = |name: &str, text: &str| write_file(dir, name, text);
    Pki {
        ca: w("ca.pem", &ca_pem),
        server_cert: w("server.pem", &server.cert_pem),
        server_key: w("server.key", &server.key_pem),
        client_cert: w("client.pem", &client.cert_pem),
        client_key: w("client.key", &client.key_pem),
        other_ca: w("other-ca.pem", &other_pem),
    }
}

/// A mosquitto with three listeners: plain (the test's observer), mutual TLS, and
/// password login (`robot` / `s3cret-pass`).
fn secure_broker(pki: &Pki) -> Broker {
    Broker::options()
        .tls(TlsFiles {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
        })
        .password("robot", "s3cret-pass")
        .start()
}

fn robot(id: &str) -> String {
    format!("id = \"{id}\"\n")
}

fn start(url: &str, id: &str, env: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut opts = DaemonOptions::for_url(robot(id), url, state.path()).keep_alive(1);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    (Daemon::start(opts), state)
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate_connects_and_goes_online() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = secure_broker(&pki);
    let id = unique("tls");
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let (mut d, _s) = start(
        &format!("mqtts://localhost:{}", broker.tls_port()),
        &id,
        &[
            ("BOTBUS_MQTT__CA_FILE", &ca),
            ("BOTBUS_MQTT__CERT_FILE", &cert),
            ("BOTBUS_MQTT__KEY_FILE", &key),
        ],
    );
    assert!(
        sees_online(&broker, &id, Duration::from_secs(15)).await,
        "{}",
        d.log()
    );
    assert!(d.is_running());
}

#[tokio::test]
async fn a_client_without_its_certificate_is_refused_and_keeps_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = secure_broker(&pki);
    let id = unique("nocert");
    let ca = pki.ca.display().to_string();
    let (mut d, _s) = start(
        &format!("mqtts://localhost:{}", broker.tls_port()),
        &id,
        &[("BOTBUS_MQTT__CA_FILE", &ca)],
    );
    assert!(!sees_online(&broker, &id, Duration::from_secs(4)).await);
    assert!(d.is_running(), "the daemon keeps retrying: {}", d.log());
    let log = d.log();
    assert!(
        log.contains("broker unreachable") || log.contains("broker connection"),
        "{log}"
    );
}

#[tokio::test]
async fn a_broker_certificate_from_another_ca_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = secure_broker(&pki);
    let id = unique("badca");
    let (ca, cert, key) = (
        pki.other_ca.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let (mut d, _s) = start(
        &format!("mqtts://localhost:{}", broker.tls_port()),
        &id,
        &[
            ("BOTBUS_MQTT__CA_FILE", &ca),
            ("BOTBUS_MQTT__CERT_FILE", &cert),
            ("BOTBUS_MQTT__KEY_FILE", &key),
        ],
    );
    assert!(!sees_online(&broker, &id, Duration::from_secs(4)).await);
    let log = d.log();
    assert!(
        log.contains(&format!(
            "the broker's certificate (CN=localhost) is signed by CN=botbus test CA, which is \
             not in ca_file {ca}; set mqtt.ca_file"
        )),
        "{log}"
    );
    assert!(d.is_running());
}

#[tokio::test]
async fn a_password_file_logs_in_and_a_wrong_password_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = secure_broker(&pki);
    let url = format!("mqtt://127.0.0.1:{}", broker.login_port());

    let good = write_file(dir.path(), "good", "s3cret-pass\n")
        .display()
        .to_string();
    let id = unique("login");
    let (d, _s) = start(
        &url,
        &id,
        &[
            ("BOTBUS_MQTT__USERNAME", "robot"),
            ("BOTBUS_MQTT__PASSWORD_FILE", &good),
        ],
    );
    assert!(
        sees_online(&broker, &id, Duration::from_secs(15)).await,
        "{}",
        d.log()
    );

    let id2 = unique("wrong");
    let (mut d2, _s2) = start(
        &url,
        &id2,
        &[
            ("BOTBUS_MQTT__USERNAME", "robot"),
            ("BOTBUS_MQTT__PASSWORD", "not-the-pass-42"),
        ],
    );
    assert!(!sees_online(&broker, &id2, Duration::from_secs(4)).await);
    let log = d2.log();
    assert!(
        log.contains("not authorized") || log.contains("bad username or password"),
        "{log}"
    );
    assert!(
        !log.contains("not-the-pass-42"),
        "the password must never be logged: {log}"
    );
    assert!(d2.is_running());
    assert!(!d.log().contains("s3cret-pass"));
}

#[test]
fn check_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let robot = write_file(dir.path(), "r.toml", "id = \"r1\"\n");
    let out = botbus_command()
        .args(["check", "--robot"])
        .arg(&robot)
        .env("BOTBUS_MQTT__PASSWORD", "hunter2-secret")
        .env("BOTBUS_MQTT__USERNAME", "robot")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2-secret"), "{all}");
}
