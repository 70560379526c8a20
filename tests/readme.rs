//! What users copy must work: every robot file in README.md validates, and the example
//! broker configuration (`config/mosquitto.conf`) runs a mosquitto that botbus uses.

mod common;

use botbus::config::Robot;
use common::*;

#[test]
fn every_robot_file_in_the_readme_validates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{root}/robots/comma_body.dbc"),
        dir.path().join("comma_body.dbc"),
    )
    .unwrap();
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let text = block.split("```").next().unwrap();
        if !text.contains("[[devices]]") {
            continue;
        }
        let text = if text.contains("\nid = ") || text.starts_with("id = ") {
            text.to_string()
        } else {
            format!("id = \"r1\"\n{text}")
        };
        let path = dir.path().join(format!("r{checked}.toml"));
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = Robot::load(&path) {
            panic!("README robot file {checked} does not validate:\n{e}\n---\n{text}");
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "found only {checked} robot files in README.md"
    );
}

#[tokio::test]
async fn the_shipped_example_broker_config_carries_a_robots_status_and_samples() {
    let broker = Broker::options().shipped_example().start();
    let state = state_dir();
    let id = unique("example");
    let mut pty = PtyDevice::open();
    let mut sub = Subscriber::connect(&broker, &[&format!("robot/{id}/#")]).await;
    let _daemon = Daemon::start(DaemonOptions::new(
        counter_robot(&id, pty.path()),
        &broker,
        state.path(),
    ));
    sub.wait_state(&id, "online").await;
    pty.send("tag=T n=7\n").await;
    let m = sub.wait_topic(&format!("robot/{id}/counter")).await;
    assert_eq!(m.f64("data"), 7.0);
}
