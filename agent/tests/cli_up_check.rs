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
    let config = on_loopback(&config);
    let path = d.join("von.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `--check` binds each underlay address as `von up` would: the examples'
/// addresses are not on this machine, two loopback ones are.
fn on_loopback(config: &str) -> String {
    config
        .replace("192.0.2.1:4789", "127.0.0.1:47891")
        .replace("198.51.100.1:4789", "127.0.0.2:47891")
}

/// Whether this test runs with CAP_NET_ADMIN, which `--check` requires.
fn net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    eff & (1 << 12) != 0
}

/// A config that passes must pass, or fail only for want of CAP_NET_ADMIN
/// (when this test is not root).
fn assert_passes(out: &Output) {
    if net_admin() {
        assert!(out.status.success(), "{out:?}");
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("lacks CAP_NET_ADMIN"), "{stderr}");
        assert_eq!(
            stderr.matches("\n  ").count(),
            1,
            "only CAP_NET_ADMIN: {stderr}"
        );
    }
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
    assert_passes(&out);
    if out.status.success() {
        assert!(stdout.contains(": ok (1 VON)"), "{stdout}");
    }
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

/// Issue 11, item 5: a private key group or others may read is refused by
/// `von up --check` (and so by `von up`), naming the file, the field and the
/// chmod; mode 0600 passes that check.
#[test]
fn a_private_key_readable_by_others_is_refused_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir("key-mode");
    let bin = env!("CARGO_BIN_EXE_von");
    let von = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    von(&[
        "ca",
        "init",
        "--von",
        "grid",
        "--on-id",
        "7",
        "--prefix",
        "100.64.0.0/24",
        "--out",
        "ca",
    ]);
    von(&[
        "cert",
        "issue",
        "--ca",
        "ca",
        "--name",
        "h1",
        "--addr",
        "100.64.0.1/24",
        "--out",
        "h1",
    ]);
    let p = |f: &str| d.join(f).display().to_string();
    let config = format!(
        "state_dir = \"{}\"\n[underlay.a]\nbind = \"192.0.2.1:4789\"\n[underlay.b]\nbind = \"198.51.100.1:4789\"\n\
         [[von]]\nname = \"grid\"\nrate = \"10mbit\"\nkeymgr = \"192.0.2.10:4433\"\n\
         cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nnoise_key = \"{}\"\n",
        p("state"),
        p("h1/h1.crt"),
        p("h1/h1.key"),
        p("ca/ca.crt"),
        p("h1/h1.noise.key"),
    );
    let path = d.join("von.toml");
    std::fs::write(&path, on_loopback(&config)).unwrap();
    let out = check(&path);
    assert_passes(&out);
    for (file, field, mode) in [
        ("h1/h1.key", "von[0].key", 0o644),
        ("h1/h1.noise.key", "von[0].noise_key", 0o640),
    ] {
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} at {mode:o} accepted");
        let expected = format!(
            "{}: {field}: {} is a private key readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            p(file),
            p(file)
        );
        assert!(stderr.contains(&expected), "{expected}\nnot in\n{stderr}");
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
