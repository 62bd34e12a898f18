//! `von up --check`: validates the config and the files it names, starts
//! nothing, and names the problem when there is one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_up_check-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The shipped examples with this test's paths substituted.
fn write_static(d: &Path, member: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples");
    let view = std::fs::read_to_string(root.join("grid.view.toml")).unwrap();
    std::fs::write(d.join("grid.view.toml"), view).unwrap();
    let config = std::fs::read_to_string(root.join("von-static.toml"))
        .unwrap()
        .replace(
            "/etc/von/grid.view.toml",
            &d.join("grid.view.toml").display().to_string(),
        )
        .replace("member = \"h1\"", &format!("member = \"{member}\""));
    let path = d.join("von.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_von"))
        .args(["up", "--check", "--config"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn a_good_static_config_passes_without_starting_anything() {
    let d = dir("good");
    let out = check(&write_static(&d, "h1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains(": ok (1 VON)"), "{stdout}");
}

#[test]
fn a_member_missing_from_the_view_is_named() {
    let d = dir("missing-member");
    let out = check(&write_static(&d, "h9"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("h9"), "{stderr}");
}

#[test]
fn a_missing_certificate_is_named_with_its_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples");
    let out = check(&root.join("von-keymgr.toml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/etc/von/grid/"), "{stderr}");
}
