//! The shipped broker setup against a real mosquitto: `config/mosquitto/mosquitto.conf`
//! (only its port and file locations substituted; a database folder and logging added) with
//! `config/mosquitto/acl` used as shipped, and certificates made by running the real
//! `botbus certs`. Robots are real daemons on pseudo-terminal devices; every other client
//! is botbus's own fleet tools (`topic echo`, `topic pub`, `cmd`) presenting a robot's or
//! the fleet's certificate through `--config`. The password variant,
//! `config/mosquitto/mosquitto-password.conf`, gets the same isolation checks.
//!
//! Negative checks never wait for silence: the denied messages go out first, then one the
//! ACL allows, and mosquitto (one thread, each message routed before it is acknowledged)
//! delivers in that order, so once the allowed one arrived a leak would have arrived too.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// `botbus certs ARGS`, which must succeed; what it printed.
fn certs(args: &[&str]) -> String {
    let out = botbus_command()
        .arg("certs")
        .args(args)
        .output()
        .expect("run botbus certs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "botbus certs {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fleet's certificates, made as the README says: a CA, the broker's certificate for
/// `localhost` and `127.0.0.1`, robots r1 and r2, and the identity `fleet` that the
/// shipped ACL lists.
struct Pki {
    dir: TempDir,
    /// What `botbus certs robot DIR r1` printed.
    r1_printed: String,
}

impl Pki {
    fn make() -> Pki {
        let dir = temp_dir("botbus-pki-");
        let d = dir.path().to_str().expect("a UTF-8 temp dir");
        certs(&["ca", d]);
        certs(&["broker", d, "--host", "localhost", "--host", "127.0.0.1"]);
        let r1_printed = certs(&["robot", d, "r1"]);
        certs(&["robot", d, "r2"]);
        certs(&["fleet", d, "fleet"]);
        Pki { dir, r1_printed }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// mosquitto with a shipped configuration: its port, its files in the PKI's folder,
    /// `/etc/mosquitto/acl` as shipped and `extra` substitutions.
    fn broker(&self, conf: &str, extra: &[(&str, &str)]) -> Broker {
        let certs = format!("{}/", self.dir.path().display());
        let acl = repo_path("config/mosquitto/acl").display().to_string();
        let mut subs = vec![
            ("listener 8883\n", "listener {port} 127.0.0.1\n"),
            ("/etc/mosquitto/certs/", certs.as_str()),
            ("/etc/mosquitto/acl", acl.as_str()),
        ];
        subs.extend_from_slice(extra);
        Broker::options()
            .config_file(repo_path(conf), &subs)
            .start()
    }

    fn url(broker: &Broker) -> String {
        format!("mqtts://localhost:{}", broker.port())
    }

    /// Settings for a fleet tool presenting `name`'s certificate.
    fn settings(&self, broker: &Broker, name: &str) -> PathBuf {
        let lines = format!(
            "[mqtt]\nurl = \"{}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            Pki::url(broker),
            self.file("ca.crt"),
            self.file(&format!("{name}.crt")),
            self.file(&format!("{name}.key")),
        );
        write_file(self.dir.path(), &format!("{name}-tool.toml"), &lines)
    }

    /// Settings for a tool with r1's certificate: the `[mqtt]` lines `botbus certs robot`
    /// printed, with this test's folder for `/etc/botbus/certs/` and the broker's port.
    fn r1_printed_settings(&self, broker: &Broker) -> PathBuf {
        let at = self
            .r1_printed
            .find("  [mqtt]\n")
            .unwrap_or_else(|| panic!("no [mqtt] lines in:\n{}", self.r1_printed));
        let lines: Vec<&str> = self.r1_printed[at..].lines().map(str::trim_start).collect();
        let text = lines
            .join("\n")
            .replace(
                "/etc/botbus/certs/",
                &format!("{}/", self.dir.path().display()),
            )
            .replace("mqtts://localhost:8883", &Pki::url(broker));
        assert!(text.contains(&Pki::url(broker)), "{text}");
        write_file(self.dir.path(), "r1-printed.toml", &format!("{text}\n"))
    }

    /// The daemon for robot `id` with its certificate.
    fn robot(&self, broker: &Broker, id: &str, pty: &PtyDevice) -> (Daemon, TempDir) {
        let (ca, cert, key) = (
            self.file("ca.crt"),
            self.file(&format!("{id}.crt")),
            self.file(&format!("{id}.key")),
        );
        start_robot(
            &Pki::url(broker),
            id,
            pty,
            &[
                ("BOTBUS_MQTT__CA_FILE", &ca),
                ("BOTBUS_MQTT__CERT_FILE", &cert),
                ("BOTBUS_MQTT__KEY_FILE", &key),
            ],
        )
    }
}

/// The mutual-TLS broker of `config/mosquitto/mosquitto.conf`, with settings for tools
/// presenting the fleet's certificate and r1's.
struct TlsFleet {
    pki: Pki,
    broker: Broker,
    fleet: PathBuf,
    r1: PathBuf,
}

impl TlsFleet {
    fn start() -> TlsFleet {
        let pki = Pki::make();
        let broker = pki.broker("config/mosquitto/mosquitto.conf", &[]);
        let fleet = pki.settings(&broker, "fleet");
        let r1 = pki.r1_printed_settings(&broker);
        TlsFleet {
            pki,
            broker,
            fleet,
            r1,
        }
    }

    /// The daemon for robot `id` with its certificate.
    fn robot(&self, id: &str, pty: &PtyDevice) -> (Daemon, TempDir) {
        self.pki.robot(&self.broker, id, pty)
    }
}

/// A robot whose device `pump` streams `tag=T n=<k>` lines to `robot/<id>/counter` and
/// takes Twist commands on `drive` as `D <linear.x> <angular.z>` lines.
fn start_robot(url: &str, id: &str, pty: &PtyDevice, env: &[(&str, &str)]) -> (Daemon, TempDir) {
    let toml = format!(
        "{}{}",
        counter_robot(id, pty.path()),
        drive_command("reject", 5000, None)
    );
    let state = state_dir();
    let mut opts = DaemonOptions::for_url(toml, url, state.path());
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    (Daemon::start(opts), state)
}

/// `botbus topic echo FILTER --config SETTINGS` left running, its lines followed; killed
/// on drop (its stderr printed when the test failed).
struct Echo {
    child: Child,
    lines: Lines,
    dir: TempDir,
}

impl Echo {
    fn start(filter: &str, settings: &Path) -> Echo {
        let dir = temp_dir("botbus-echo-");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("echo's stderr");
        let mut child = botbus_command()
            .args(["topic", "echo", filter, "--config"])
            .arg(settings)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("run botbus topic echo");
        let lines = Lines::follow(child.stdout.take().expect("stdout"));
        Echo { child, lines, dir }
    }

    /// Every message printed so far: (topic, payload).
    fn messages(&self) -> Vec<(String, Value)> {
        self.lines
            .texts()
            .iter()
            .map(|l| {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                (
                    v["topic"].as_str().unwrap_or_default().to_string(),
                    v["payload"].clone(),
                )
            })
            .collect()
    }

    /// Waits for a message on `topic` whose payload satisfies `pred`.
    async fn wait(&self, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let at = self
            .lines
            .wait(0, &format!("a message on {topic}"), |l| {
                serde_json::from_str::<Value>(l)
                    .is_ok_and(|v| v["topic"] == topic && pred(&v["payload"]))
            })
            .await;
        self.messages()[at].1.clone()
    }

    /// The topics printed so far that start with `prefix`.
    fn topics_under(&self, prefix: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.starts_with(prefix))
            .collect()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- botbus topic echo stderr -----\n{}",
                std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `botbus topic pub TOPIC JSON --config SETTINGS [--retain]`, which must succeed.
/// mosquitto acknowledges a PUBLISH its ACL denies (MQTT 3.1.1 has no way to say no) and
/// drops it, so a denied publish succeeds here too: what matters is who receives it.
async fn publish(settings: &Path, topic: &str, json: &str, retain: bool) {
    let config = settings.display().to_string();
    let mut args = vec!["topic", "pub", topic, json, "--config", &config];
    if retain {
        args.push("--retain");
    }
    let run = botbus(&args).await;
    assert_eq!(run.code, Some(0), "topic pub {topic}: {run}");
}

/// [`publish`] for each `(topic, json, retain)`, one after the other.
async fn publish_all(settings: &Path, messages: &[(&str, &str, bool)]) {
    for (topic, json, retain) in messages {
        publish(settings, topic, json, *retain).await;
    }
}

/// `botbus cmd ROBOT drive JSON --config SETTINGS --timeout-ms MS`.
fn drive(
    settings: &Path,
    robot: &str,
    json: &str,
    ms: u64,
) -> impl std::future::Future<Output = Run> {
    let config = settings.display().to_string();
    let ms = ms.to_string();
    botbus(&[
        "cmd",
        robot,
        "drive",
        json,
        "--config",
        &config,
        "--timeout-ms",
        &ms,
    ])
}

fn state_is(p: &Value, state: &str) -> bool {
    p["state"] == state
}

/// A diagnostics report saying the `pump` device is open.
fn pump_open(p: &Value) -> bool {
    p["devices"].as_array().is_some_and(|ds| {
        ds.iter()
            .any(|d| d["name"] == "pump" && d["connected"] == true)
    })
}

/// Waits for robot `id` to be online with its device open, feeds its device a sample and
/// waits for it on `robot/<id>/counter` (`watch` sees `robot/<id>/#`).
async fn streams(watch: &Echo, pty: &mut PtyDevice, id: &str, n: u32) {
    watch
        .wait(&format!("robot/{id}/status"), |p| state_is(p, "online"))
        .await;
    watch
        .wait(&format!("robot/{id}/diagnostics"), pump_open)
        .await;
    pty.send(&format!("tag=T n={n}\n")).await;
    watch
        .wait(&format!("robot/{id}/counter"), |p| {
            p["data"].as_f64() == Some(f64::from(n))
        })
        .await;
}

/// r1's identity (`r1` settings) tries to command r2, to impersonate it (its retained
/// status) and to forge its telemetry, then publishes into its own topics, which it may;
/// `watch`, on robot/#, must get only that last message.
async fn r1_writes_into_r2_in_vain(r1: &Path, watch: &Echo) {
    publish_all(
        r1,
        &[
            ("robot/r2/cmd/drive", r#"{"linear": {"x": 1.0}}"#, false),
            ("robot/r2/cmd/estop", r#"{"engage": true}"#, true),
            ("robot/r2/status", r#"{"state": "offline"}"#, true),
            ("robot/r2/counter", r#"{"data": 1.0}"#, false),
            ("robot/r1/note", r#"{"data": 2.0}"#, false),
        ],
    )
    .await;
    watch.wait("robot/r1/note", |_| true).await;
    assert_eq!(
        watch.topics_under("robot/r2/"),
        Vec::<String>::new(),
        "nothing r1 sent into robot/r2/ reached the fleet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_with_its_certificate_streams_takes_commands_and_leaves_its_will() {
    let t = TlsFleet::start();
    let mut pty = PtyDevice::open();
    let (r1, _state) = t.robot("r1", &pty);
    let watch = Echo::start("robot/r1/#", &t.fleet);

    // The retained birth messages: the ACL lets the robot write its status and catalog.
    streams(&watch, &mut pty, "r1", 7).await;
    let catalog = watch.wait("robot/r1/catalog", |_| true).await;
    assert_eq!(catalog["commands"][0]["topic"], "robot/r1/cmd/drive");

    // Command in (the robot reads robot/r1/cmd/#), ack out, the device gets it.
    let run = drive(&t.fleet, "r1", r#"{"id": 11, "linear": {"x": 0.5}}"#, 5000).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("\"ok\":true"), "{run}");
    pty.wait_line("D 0.500 0.000").await;
    watch.wait("robot/r1/ack/drive", |p| p["id"] == 11).await;

    // Killed without a goodbye: the broker publishes its Last Will, which the ACL allowed
    // when it connected.
    r1.signal(Signal::SIGKILL);
    watch
        .wait("robot/r1/status", |p| state_is(p, "offline"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_identity_cannot_publish_into_another_robots_topics() {
    let t = TlsFleet::start();
    // A retained message tells when the observer's subscription is in place.
    publish(&t.fleet, "robot/fleet/ready", "{}", true).await;
    let watch = Echo::start("robot/#", &t.fleet);
    watch.wait("robot/fleet/ready", |_| true).await;

    r1_writes_into_r2_in_vain(&t.r1, &watch).await;
    // Nor was anything kept for later: a new subscriber gets no retained robot/r2 message.
    let later = Echo::start("robot/#", &t.fleet);
    later.wait("robot/fleet/ready", |_| true).await;
    publish(&t.fleet, "robot/fleet/done", "{}", false).await;
    later.wait("robot/fleet/done", |_| true).await;
    assert_eq!(later.topics_under("robot/r2/"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_identity_reads_only_its_own_commands() {
    let t = TlsFleet::start();
    publish_all(
        &t.fleet,
        &[
            ("robot/r1/cmd/hello", r#"{"n": 1}"#, true),
            ("robot/r2/cmd/hello", r#"{"n": 2}"#, true),
        ],
    )
    .await;

    // mosquitto grants every SUBSCRIBE and checks `read` per message, so r1 may ask for
    // everything and must still get only its own commands.
    let spy = Echo::start("robot/#", &t.r1);
    spy.wait("robot/r1/cmd/hello", |_| true).await;
    publish_all(
        &t.fleet,
        &[
            ("robot/r2/cmd/drive", r#"{"linear": {"x": 0.3}}"#, false),
            ("robot/r2/counter", r#"{"data": 3.0}"#, false),
            ("robot/r1/cmd/drive", r#"{"linear": {"x": 0.1}}"#, false),
        ],
    )
    .await;
    spy.wait("robot/r1/cmd/drive", |_| true).await;

    let topics: Vec<String> = spy.messages().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        topics,
        ["robot/r1/cmd/hello", "robot/r1/cmd/drive"],
        "r1 reads its commands and nothing of r2's (commands, retained or live, or telemetry)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_identity_commands_every_robot_and_a_robot_commands_none_but_itself() {
    let t = TlsFleet::start();
    let (mut pty1, mut pty2) = (PtyDevice::open(), PtyDevice::open());
    let (_d1, _s1) = t.robot("r1", &pty1);
    let (_d2, _s2) = t.robot("r2", &pty2);
    // A robot subscribes before it says it is online, so then it takes commands.
    let watch = Echo::start("robot/+/status", &t.fleet);
    watch
        .wait("robot/r1/status", |p| state_is(p, "online"))
        .await;
    watch
        .wait("robot/r2/status", |p| state_is(p, "online"))
        .await;

    let (a1, a2) = tokio::join!(
        drive(&t.fleet, "r1", r#"{"linear": {"x": 0.25}}"#, 5000),
        drive(&t.fleet, "r2", r#"{"linear": {"x": -0.75}}"#, 5000),
    );
    for a in [&a1, &a2] {
        assert_eq!(a.code, Some(0), "{a}");
        assert!(a.stdout.contains("\"ok\":true"), "{a}");
    }
    pty1.wait_line("D 0.250 0.000").await;
    pty2.wait_line("D -0.750 0.000").await;

    // r1's identity commanding r2: the broker drops the command (and r1 could not read
    // the ack anyway), so `cmd` times out and r2's device never sees it.
    let denied = drive(&t.r1, "r2", r#"{"linear": {"x": 0.9}}"#, 1000).await;
    assert_eq!(denied.code, Some(3), "no ack: {denied}");
    let got = pty2.lines_for(Duration::from_millis(500)).await;
    assert!(
        !got.iter().any(|l| l.starts_with("D 0.900")),
        "r2's device got r1's command: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_password_login_a_robot_streams_and_cannot_write_into_another_robots_topics() {
    let pki = Pki::make();
    let dir = temp_dir("botbus-passwd-");
    let passwd = dir.path().join("passwd");
    for (i, (user, pass)) in [("r1", "r1-s3cret"), ("fleet", "fleet-s3cret")]
        .iter()
        .enumerate()
    {
        let mut cmd = std::process::Command::new(mosquitto_program("mosquitto_passwd"));
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let st = cmd
            .arg(&passwd)
            .args([user, pass])
            .status()
            .expect("run mosquitto_passwd");
        assert!(st.success(), "mosquitto_passwd {user}: {st}");
    }
    let passwd_path = passwd.display().to_string();
    let broker = pki.broker(
        "config/mosquitto/mosquitto-password.conf",
        &[("/etc/mosquitto/passwd", &passwd_path)],
    );
    let url = Pki::url(&broker);
    let ca = pki.file("ca.crt");
    let login = |user: &str, pass: &str| {
        let pw = write_file(dir.path(), &format!("{user}.pw"), &format!("{pass}\n"));
        let text = format!(
            "[mqtt]\nurl = \"{url}\"\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{}\"\n",
            pw.display()
        );
        (write_file(dir.path(), &format!("{user}.toml"), &text), pw)
    };
    let (fleet, _) = login("fleet", "fleet-s3cret");
    let (r1, r1_pw) = login("r1", "r1-s3cret");

    let mut pty = PtyDevice::open();
    let r1_pw = r1_pw.display().to_string();
    let (_d, _s) = start_robot(
        &url,
        "r1",
        &pty,
        &[
            ("BOTBUS_MQTT__CA_FILE", &ca),
            ("BOTBUS_MQTT__USERNAME", "r1"),
            ("BOTBUS_MQTT__PASSWORD_FILE", &r1_pw),
        ],
    );
    let watch = Echo::start("robot/#", &fleet);
    streams(&watch, &mut pty, "r1", 5).await;
    r1_writes_into_r2_in_vain(&r1, &watch).await;
}
