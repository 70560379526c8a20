//! Certificates as people make them, against a real mosquitto: the recipe of the
//! mosquitto-tls(7) man page run with the real `openssl` (X.509 v1 certificates, encrypted
//! and PKCS#1/SEC1/PKCS#8 keys), and the plain-words reasons of the daemon and of
//! `botbus check [--probe]` when a certificate is wrong.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `openssl ARGS` in `dir`; the recipes below never prompt (`-subj`, `-pass*`).
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed by scripts/test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private key in the form OpenSSL writes for `form`.
#[derive(Clone, Copy, Debug)]
enum KeyForm {
    /// `genrsa -aes256`, exactly as the man page says: PKCS#8, encrypted.
    Encrypted,
    /// OpenSSL 3's `genrsa`: PKCS#8.
    Pkcs8,
    /// `genrsa -traditional`: PKCS#1 `RSA PRIVATE KEY`.
    Pkcs1,
    /// `ecparam -genkey`: SEC1 `EC PRIVATE KEY` after an `EC PARAMETERS` block.
    Sec1,
}

fn key(dir: &Path, name: &str, form: KeyForm) {
    match form {
        KeyForm::Encrypted => openssl(
            dir,
            &[
                "genrsa",
                "-aes256",
                "-passout",
                "pass:secret",
                "-out",
                name,
                "2048",
            ],
        ),
        KeyForm::Pkcs8 => openssl(dir, &["genrsa", "-out", name, "2048"]),
        KeyForm::Pkcs1 => openssl(dir, &["genrsa", "-traditional", "-out", name, "2048"]),
        KeyForm::Sec1 => openssl(
            dir,
            &["ecparam", "-name", "prime256v1", "-genkey", "-out", name],
        ),
    }
}

/// The man page's CA: `openssl req -new -x509 -days ... -extensions v3_ca`.
fn man_page_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-extensions",
            "v3_ca",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-passout",
            "pass:capass",
        ],
    );
}

/// A certificate signed by CA `ca` as the man page signs it (`openssl x509 -req`, so v1),
/// or with `ext` as an `-extfile` (which makes it v3), valid for a year.
fn signed(dir: &Path, ca: &str, name: &str, form: KeyForm, ext: Option<&str>) -> PathBuf {
    signed_for(dir, ca, name, form, ext, 365)
}

fn signed_for(
    dir: &Path,
    ca: &str,
    name: &str,
    form: KeyForm,
    ext: Option<&str>,
    days: u32,
) -> PathBuf {
    let (subj, keyfile) = (format!("/CN={name}"), format!("{name}.key"));
    key(dir, &keyfile, form);
    #[rustfmt::skip]
    openssl(dir, &["req", "-out", "x.csr", "-new", "-subj", &subj, "-key", &keyfile,
                   "-passin", "pass:secret"]);
    let (ca_crt, ca_key, out, days) = (
        format!("{ca}.crt"),
        format!("{ca}.key"),
        format!("{name}.crt"),
        days.to_string(),
    );
    #[rustfmt::skip]
    let mut args = vec!["x509", "-req", "-in", "x.csr", "-CA", &ca_crt, "-CAkey", &ca_key,
                        "-passin", "pass:capass", "-CAcreateserial", "-out", &out,
                        "-days", &days];
    if let Some(ext) = ext {
        write_file(dir, "ext.cnf", ext);
        args.extend(["-extfile", "ext.cnf"]);
    }
    openssl(dir, &args);
    dir.join(out)
}

const SAN_LOCALHOST: &str = "subjectAltName=DNS:localhost\n";

/// A broker with a mutual-TLS listener: CA `ca` and the server certificate `server`.
fn broker(dir: &Path, ca: &str, server: &str) -> Broker {
    Broker::options()
        .tls(TlsFiles {
            ca: dir.join(format!("{ca}.crt")),
            cert: dir.join(format!("{server}.crt")),
            key: dir.join(format!("{server}.key")),
        })
        .start()
}

fn tls_env(dir: &Path, ca: &str, client: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![(
        "BOTBUS_MQTT__CA_FILE".to_string(),
        dir.join(format!("{ca}.crt")).display().to_string(),
    )];
    if let Some(c) = client {
        env.push((
            "BOTBUS_MQTT__CERT_FILE".into(),
            dir.join(format!("{c}.crt")).display().to_string(),
        ));
        env.push((
            "BOTBUS_MQTT__KEY_FILE".into(),
            dir.join(format!("{c}.key")).display().to_string(),
        ));
    }
    env
}

fn daemon(url: &str, id: &str, env: &[(String, String)]) -> (Daemon, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut opts =
        DaemonOptions::for_url(format!("id = \"{id}\"\n"), url, state.path()).keep_alive(1);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    (Daemon::start(opts), state)
}

/// `botbus check [--probe]` with these settings.
fn check(dir: &Path, url: &str, env: &[(String, String)], probe: bool) -> (i32, String) {
    let robot = write_file(dir, "check-robot.toml", "id = \"r1\"\n");
    let mut cmd = botbus_command();
    cmd.args(["check", "--robot"])
        .arg(&robot)
        .env("BOTBUS_MQTT__URL", url)
        .current_dir(dir);
    if probe {
        cmd.arg("--probe");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn client_certificates_made_as_the_man_page_says_connect_with_every_key_form() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    let forms = [
        ("pkcs8", KeyForm::Pkcs8),
        ("pkcs1", KeyForm::Pkcs1),
        ("sec1", KeyForm::Sec1),
    ];
    for (name, form) in forms {
        let crt = signed(d, "ca", name, form, None);
        let text = std::fs::read(&crt).unwrap();
        let ver = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&crt)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ver.stdout).contains("Version: 1 (0x0)"),
            "the man page's recipe makes v1 certificates: {}",
            String::from_utf8_lossy(&text)
        );
    }
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());
    let mut running = Vec::new();
    for (name, _) in forms {
        let id = unique(name);
        running.push((id.clone(), daemon(&url, &id, &tls_env(d, "ca", Some(name)))));
    }
    for (id, (d, _)) in &mut running {
        assert!(
            sees_online(&broker, id, Duration::from_secs(15)).await,
            "{id}: {}",
            d.log()
        );
    }
}

#[tokio::test]
async fn the_daemon_warns_at_start_of_a_client_certificate_ending_within_30_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    signed_for(d, "ca", "client", KeyForm::Pkcs8, None, 10);
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());
    let id = unique("ending");
    let (dm, _s) = daemon(&url, &id, &tls_env(d, "ca", Some("client")));
    assert!(
        sees_online(&broker, &id, Duration::from_secs(15)).await,
        "it still connects: {}",
        dm.log()
    );
    let log = dm.log();
    let crt = d.join("client.crt").display().to_string();
    assert!(
        log.contains(&format!("cert_file {crt} (CN=client) expires on ")),
        "{log}"
    );
    assert!(
        log.contains("in 9 days") || log.contains("in 10 days"),
        "{log}"
    );
}

#[tokio::test]
async fn an_encrypted_key_is_named_with_the_line_that_decrypts_it_and_that_line_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    signed(d, "ca", "client", KeyForm::Encrypted, None);
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());
    let env = tls_env(d, "ca", Some("client"));

    let (code, out) = check(d, &url, &env, false);
    assert_eq!(code, 2, "{out}");
    let key = d.join("client.key").display().to_string();
    assert!(
        out.contains(&format!(
            "  error   {key}: the private key is encrypted with a passphrase"
        )),
        "{out}"
    );
    let id = unique("locked");
    let (mut locked, _s) = daemon(&url, &id, &env);
    assert!(!sees_online(&broker, &id, Duration::from_secs(2)).await);
    let log = locked.log();
    assert!(
        log.contains(&format!("`openssl pkey -in {key} -out {key}.plain`")),
        "{log}"
    );
    assert!(locked.is_running(), "it keeps retrying: {log}");

    // The line from the message, with the passphrase given on the command line.
    openssl(
        d,
        &[
            "pkey",
            "-in",
            &key,
            "-out",
            &format!("{key}.plain"),
            "-passin",
            "pass:secret",
        ],
    );
    let mut env = env;
    env[2].1 = format!("{key}.plain");
    let (code, out) = check(d, &url, &env, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PKCS#8 key of cert_file"), "{out}");
    let id = unique("unlocked");
    let (ok, _s) = daemon(&url, &id, &env);
    assert!(
        sees_online(&broker, &id, Duration::from_secs(15)).await,
        "{}",
        ok.log()
    );
}

#[tokio::test]
async fn a_v1_broker_certificate_is_refused_once_in_the_log_with_its_cause_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    // Exactly the man page: `openssl x509 -req` without extensions, so v1 and no SAN.
    signed(d, "ca", "server", KeyForm::Pkcs8, None);
    signed(d, "ca", "client", KeyForm::Pkcs8, None);
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());
    let env = tls_env(d, "ca", Some("client"));
    let id = unique("v1server");
    let (mut dm, _s) = daemon(&url, &id, &env);

    let (code, out) = check(d, &url, &env, true);
    assert_eq!(code, 2, "{out}");
    let cause = "the broker's certificate (CN=server) is X.509 v1, which has no subjectAltName";
    assert!(
        out.contains(&format!(
            "  error   TLS with localhost:{}: {cause}",
            broker.tls_port()
        )),
        "{out}"
    );
    assert!(
        out.contains("botbus certs broker DIR --host localhost"),
        "{out}"
    );
    assert!(
        out.contains("server chain[0]: CN=server, issued by CN=ca, X.509 v1, names none"),
        "{out}"
    );

    // Several retries by now (backoff from 100 ms), one line in the log.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!sees_online(&broker, &id, Duration::from_millis(200)).await);
    let log = dm.log();
    assert_eq!(log.matches(cause).count(), 1, "{log}");
    assert!(log.contains("subjectAltName=DNS:localhost"), "{log}");
    assert!(dm.is_running());
}

#[tokio::test]
async fn a_broker_certificate_without_san_or_for_another_host_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    signed(
        d,
        "ca",
        "nosan",
        KeyForm::Pkcs8,
        Some("basicConstraints=CA:FALSE\n"),
    );
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    signed(d, "ca", "client", KeyForm::Pkcs8, None);
    let env = tls_env(d, "ca", Some("client"));

    let nosan = broker(d, "ca", "nosan");
    let (code, out) = check(
        d,
        &format!("mqtts://localhost:{}", nosan.tls_port()),
        &env,
        true,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("error   TLS with localhost:{}: the broker's certificate (CN=nosan) has no subjectAltName; clients check localhost against subjectAltName only", nosan.tls_port())),
        "{out}"
    );

    let good = broker(d, "ca", "server");
    let (code, out) = check(
        d,
        &format!("mqtts://127.0.0.1:{}", good.tls_port()),
        &env,
        true,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("names DNS:localhost, not 127.0.0.1 (the host in mqtt.url)"),
        "{out}"
    );
    assert!(out.contains("subjectAltName=IP:127.0.0.1"), "{out}");
}

#[tokio::test]
async fn check_probe_reports_the_version_chain_names_and_acceptance_of_a_good_broker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    signed(d, "ca", "client", KeyForm::Pkcs8, None);
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());
    let (code, out) = check(d, &url, &tls_env(d, "ca", Some("client")), true);
    assert_eq!(code, 0, "{out}");
    for line in [
        "  tls     cert_file ",
        "client.crt: CN=client (X.509 v1), signed by CN=ca in ca_file",
        "  tls     server chain[0]: CN=server, issued by CN=ca, X.509 v3, names DNS:localhost",
        "  tls     server certificate names localhost, the host in mqtt.url",
        ": TLS handshake done, TLSv1_3",
        ": MQTT CONNECT accepted over TLS",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.ends_with("ok\n"), "{out}");
}

#[tokio::test]
async fn the_broker_refusing_our_certificate_or_its_absence_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    man_page_ca(d, "ca");
    man_page_ca(d, "otherca");
    signed(d, "ca", "server", KeyForm::Pkcs8, Some(SAN_LOCALHOST));
    signed(d, "otherca", "stranger", KeyForm::Pkcs8, None);
    let broker = broker(d, "ca", "server");
    let url = format!("mqtts://localhost:{}", broker.tls_port());

    let (code, out) = check(d, &url, &tls_env(d, "ca", Some("stranger")), true);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("is signed by CN=otherca, which is not in ca_file"),
        "the doctor warns before the probe: {out}"
    );
    assert!(
        out.contains(
            "the broker refused our client certificate (CN=stranger, issued by CN=otherca)"
        ),
        "{out}"
    );

    let id = unique("nocert");
    let (dm, _s) = daemon(&url, &id, &tls_env(d, "ca", None));
    assert!(!sees_online(&broker, &id, Duration::from_secs(2)).await);
    let log = dm.log();
    assert!(
        log.contains("the broker requires a client certificate")
            && log.contains("set mqtt.cert_file and mqtt.key_file"),
        "{log}"
    );
}

#[tokio::test]
async fn check_reports_a_mismatched_key_an_expired_certificate_and_a_wrong_ca_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_pem, _) = pki::ca("fleet CA");
    let (_, other) = pki::ca("another CA");
    // 2024-01-01 for 366 days: expired on 2025-01-01.
    let cert = pki::robot(&other, "r1", &pki::validity_from(1_704_067_200, 366));
    let stray = pki::robot(&other, "r2", &pki::year());
    let env = vec![
        (
            "BOTBUS_MQTT__CA_FILE".to_string(),
            write_file(d, "ca.crt", &ca_pem).display().to_string(),
        ),
        (
            "BOTBUS_MQTT__CERT_FILE".into(),
            write_file(d, "r1.crt", &cert.cert_pem)
                .display()
                .to_string(),
        ),
        (
            "BOTBUS_MQTT__KEY_FILE".into(),
            write_file(d, "r1.key", &stray.key_pem)
                .display()
                .to_string(),
        ),
    ];
    let (code, out) = check(d, "mqtts://localhost:8883", &env, false);
    assert_eq!(code, 2, "{out}");
    let (crt, key) = (&env[1].1, &env[2].1);
    let lines: Vec<&str> = out.lines().collect();
    let has = |start: &str| lines.iter().any(|l| l.starts_with(start));
    assert!(
        has(&format!(
            "  error   cert_file {crt} (CN=r1) expired on 2025-01-01"
        )),
        "{out}"
    );
    assert!(
        has(&format!(
            "  warning cert_file {crt} (CN=r1) is signed by CN=another CA, which is not in ca_file"
        )),
        "{out}"
    );
    assert!(
        has(&format!("  error   {key} is not the private key of {crt}")),
        "{out}"
    );
    assert!(
        out.ends_with("2 TLS problems above: the daemon cannot connect until fixed\n"),
        "{out}"
    );
}
