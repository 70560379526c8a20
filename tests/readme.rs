//! The robot files in README.md are what users copy: every one of them must validate.

use botbus::config::Robot;

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
