//! `botbus certs` in a temp dir: the files, their modes, what is printed, and every way
//! it refuses, with its exit code.

use super::*;
use crate::cli::args::{Cli, Command};
use crate::config::Settings;
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

/// 2025-01-01T00:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

/// `botbus certs ARGS...` as parsed from a command line.
fn parse(args: &[&str]) -> CertsCommand {
    let cli = Cli::try_parse_from(["botbus", "certs"].iter().chain(args))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Certs { command } => command,
        _ => panic!("not botbus certs"),
    }
}

/// Runs `botbus certs ARGS...`: what it printed, or its error.
fn certs(args: &[&str]) -> Result<String, CliError> {
    let mut out = Vec::new();
    run(&parse(args), now(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn ok(args: &[&str]) -> String {
    certs(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error of a command that must fail: (exit code, the message on stderr).
fn fails(args: &[&str]) -> (u8, String) {
    match certs(args) {
        Ok(out) => panic!("{args:?} succeeded:\n{out}"),
        Err(e) => (e.exit_code(), e.stderr_lines().join("\n")),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
    arg: String,
}

impl Dir {
    /// A folder for the certificates, not created yet (`certs ca` creates it).
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("certs");
        let arg = path.display().to_string();
        Dir {
            _tmp: tmp,
            path,
            arg,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap()
    }

    /// `botbus certs broker DIR` for broker.example and 10.0.0.5.
    fn broker(&self) -> String {
        ok(&[
            "broker",
            &self.arg,
            "--host",
            "broker.example",
            "--host",
            "10.0.0.5",
        ])
    }

    /// A CA and a broker certificate.
    fn with_ca_and_broker() -> Dir {
        let d = Dir::new();
        ok(&["ca", &d.arg]);
        d.broker();
        d
    }
}

#[test]
fn the_four_commands_write_their_files_with_private_keys_0600_and_say_what_next() {
    let d = Dir::new();
    let out = ok(&["ca", &d.arg, "--name", "ACME robots CA"]);
    assert_eq!(mode(&d.path), 0o700, "the folder holds private keys");
    assert!(out.starts_with(&format!(
        "wrote {0}/ca.crt: the CA \"ACME robots CA\", valid until 2034-12-30\n\
         wrote {0}/ca.key: its private key (mode 0600)\n",
        d.arg
    )));
    assert!(
        out.contains(&format!("botbus certs broker {} --host", d.arg)),
        "{out}"
    );

    let out = d.broker();
    assert!(out.starts_with(&format!(
        "wrote {}/broker.crt: the broker broker.example, 10.0.0.5 (server certificate), \
         signed by \"ACME robots CA\", valid until 2027-04-06\n",
        d.arg
    )));
    assert!(out.contains("/etc/mosquitto/conf.d/botbus.conf"), "{out}");
    assert!(
        out.contains(&format!("botbus certs robot {} <robot id>", d.arg)),
        "{out}"
    );

    let out = ok(&["robot", &d.arg, "r1", "--days", "30"]);
    assert!(out.contains("robot r1 (client certificate)"), "{out}");
    assert!(out.contains("valid until 2025-01-31"), "{out}");
    assert!(
        out.contains("url = \"mqtts://broker.example:8883\""),
        "{out}"
    );

    let out = ok(&["fleet", &d.arg, "ops"]);
    assert!(
        out.contains("user ops\n  topic readwrite robot/#\n"),
        "{out}"
    );
    assert!(out.contains(&format!(
        "--cert-file {0}/ops.crt --key-file {0}/ops.key",
        d.arg
    )));
    let out = ok(&["fleet", &d.arg, "fleet"]);
    assert!(
        out.contains("config/mosquitto/acl already gives `fleet`"),
        "{out}"
    );

    for stem in ["ca", "broker", "r1", "ops", "fleet"] {
        assert_eq!(mode(&d.file(&format!("{stem}.key"))), 0o600, "{stem}.key");
        // 0644 as created, less whatever the umask takes away.
        let cert_mode = mode(&d.file(&format!("{stem}.crt")));
        assert!(
            cert_mode & !0o644 == 0 && cert_mode & 0o600 == 0o600,
            "{stem}.crt: {cert_mode:o}"
        );
        let s = crate::certs::summary(&d.read(&format!("{stem}.crt"))).unwrap();
        let cn = match stem {
            "ca" => "ACME robots CA",
            "broker" => "broker.example",
            name => name,
        };
        assert_eq!(s.common_name.as_deref(), Some(cn));
    }
}

#[test]
fn the_mqtt_lines_printed_for_a_robot_are_settings_botbus_loads() {
    let d = Dir::with_ca_and_broker();
    let out = ok(&["robot", &d.arg, "r1"]);
    let at = out.find("  [mqtt]\n").expect("the [mqtt] lines");
    // As installed on the robot, with the files where this test keeps them.
    let lines = out[at..]
        .replace("/etc/botbus/certs/", &format!("{}/", d.arg))
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let file = d.file("botbus.toml");
    std::fs::write(&file, &lines).unwrap();
    let loaded =
        Settings::load_with_env(Some(&file), Vec::new()).unwrap_or_else(|e| panic!("{e}\n{lines}"));
    let m = &loaded.settings.mqtt;
    assert_eq!(m.url, "mqtts://broker.example:8883");
    assert_eq!(m.ca_file, format!("{}/ca.crt", d.arg));
    assert_eq!(m.cert_file, format!("{}/r1.crt", d.arg));
    assert_eq!(m.key_file, format!("{}/r1.key", d.arg));
}

#[test]
fn an_ipv6_broker_goes_in_brackets_and_without_a_broker_certificate_a_placeholder() {
    let d = Dir::new();
    ok(&["ca", &d.arg]);
    let out = ok(&["robot", &d.arg, "r1"]);
    assert!(
        out.contains("url = \"mqtts://<broker host>:8883\""),
        "{out}"
    );
    ok(&["broker", &d.arg, "--host", "fd00::5"]);
    let out = ok(&["robot", &d.arg, "r2"]);
    assert!(out.contains("url = \"mqtts://[fd00::5]:8883\""), "{out}");
}

#[test]
fn nothing_is_replaced_without_force_and_force_writes_a_fresh_key_with_mode_0600() {
    let d = Dir::with_ca_and_broker();
    ok(&["robot", &d.arg, "r1"]);
    let (cert, key) = (d.read("r1.crt"), d.read("r1.key"));
    assert_eq!(
        fails(&["robot", &d.arg, "r1"]),
        (
            1,
            format!(
                "{}/r1.crt already exists; pass --force to replace it",
                d.arg
            )
        )
    );
    // A lone key is enough to refuse: no half pair is ever written.
    std::fs::remove_file(d.file("r1.crt")).unwrap();
    let (_, err) = fails(&["robot", &d.arg, "r1"]);
    assert!(
        err.starts_with(&format!("{}/r1.key already exists", d.arg)),
        "{err}"
    );
    assert!(!d.file("r1.crt").exists());
    let (_, err) = fails(&["ca", &d.arg]);
    assert!(
        err.starts_with(&format!("{}/ca.crt already exists", d.arg)),
        "{err}"
    );
    assert_eq!(d.read("r1.key"), key);

    // A key someone loosened is replaced by a new file, created 0600, not rewritten.
    std::fs::set_permissions(d.file("r1.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&["robot", &d.arg, "r1", "--force"]);
    assert_ne!(d.read("r1.key"), key);
    assert_ne!(d.read("r1.crt"), cert);
    assert_eq!(mode(&d.file("r1.key")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&d.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_name_another_identity_has_is_refused_even_with_force() {
    let d = Dir::with_ca_and_broker();
    ok(&["fleet", &d.arg, "ops"]);
    assert_eq!(
        fails(&["robot", &d.arg, "ops", "--force"]),
        (
            1,
            format!(
                "{}/ops.crt is the fleet identity `ops`; a robot cannot have the same name, \
             because the broker tells identities apart by name alone",
                d.arg
            )
        )
    );
    ok(&["fleet", &d.arg, "ops", "--force"]);
}

#[test]
fn without_a_usable_ca_in_dir_the_error_names_the_file() {
    let d = Dir::new();
    assert_eq!(
        fails(&["robot", &d.arg, "r1"]),
        (
            1,
            format!(
                "no CA in {0}: {0}/ca.crt is missing; make one first with `botbus certs ca {0}`",
                d.arg
            )
        )
    );
    ok(&["ca", &d.arg]);
    std::fs::remove_file(d.file("ca.key")).unwrap();
    let (_, err) = fails(&["broker", &d.arg, "--host", "b.example"]);
    assert!(
        err.contains(&format!("{}/ca.key is missing", d.arg)),
        "{err}"
    );

    // Another CA's key.
    let other = Dir::new();
    ok(&["ca", &other.arg]);
    std::fs::copy(other.file("ca.key"), d.file("ca.key")).unwrap();
    assert_eq!(
        fails(&["fleet", &d.arg, "ops"]),
        (
            1,
            format!(
                "{}/ca.key: the CA key does not belong to the CA certificate",
                d.arg
            )
        )
    );
    // A leaf where the CA should be.
    ok(&["robot", &other.arg, "r1"]);
    std::fs::copy(other.file("r1.crt"), d.file("ca.crt")).unwrap();
    let (_, err) = fails(&["fleet", &d.arg, "ops"]);
    assert!(
        err.starts_with(&format!("{}/ca.crt: not a CA certificate", d.arg)),
        "{err}"
    );
    assert!(!d.file("ops.crt").exists() && !d.file("ops.key").exists());
}

#[test]
fn bad_arguments_are_usage_errors_that_write_nothing() {
    let d = Dir::with_ca_and_broker();
    for (args, want) in [
        (
            vec!["robot", &d.arg, "r 1"],
            "`r 1` is not a valid robot id: use letters, digits, `_` or `-`, as in a robot file's `id`",
        ),
        (
            vec!["fleet", &d.arg, "ca"],
            "`ca` is not a valid fleet name: `ca` and `broker` name the CA's and the broker's files",
        ),
        (
            vec!["broker", &d.arg, "--host", "b.example", "--host", "bad host", "--force"],
            "`bad host` is not a host name or IP address: use letters, digits and `-` in labels \
             of 1 to 63 characters separated by `.`",
        ),
        (
            vec!["ca", &d.arg, "--name", "", "--force"],
            "`` is not a valid CA name: give 1 to 64 characters",
        ),
    ] {
        let before: Vec<String> = ["ca.crt", "broker.crt"].iter().map(|f| d.read(f)).collect();
        let (code, err) = fails(&args);
        assert_eq!((code, err.as_str()), (2, want), "{args:?}");
        let after: Vec<String> = ["ca.crt", "broker.crt"].iter().map(|f| d.read(f)).collect();
        assert_eq!(before, after, "{args:?} changed nothing");
    }
    assert!(!d.file("r 1.crt").exists());
}

#[test]
fn the_flags_parse_and_clap_refuses_what_cannot_work() {
    let CertsCommand::Broker { dir, hosts, opts } = parse(&[
        "broker",
        "certs",
        "--host",
        "a.example",
        "--host",
        "10.0.0.5",
        "--days",
        "30",
        "--force",
    ]) else {
        panic!("not certs broker");
    };
    assert_eq!(dir, PathBuf::from("certs"));
    assert_eq!(hosts, ["a.example", "10.0.0.5"]);
    assert_eq!((opts.days, opts.force), (Some(30), true));
    for bad in [
        vec!["broker", "certs"],
        vec!["robot", "certs"],
        vec!["ca", "certs", "--days", "0"],
        vec!["fleet", "certs", "ops", "--days", "36501"],
    ] {
        let err = Cli::try_parse_from(["botbus", "certs"].iter().chain(&bad))
            .err()
            .unwrap_or_else(|| panic!("{bad:?} parsed"));
        assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
    }
}
