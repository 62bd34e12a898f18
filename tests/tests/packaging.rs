//! Packaging: the systemd units pass `systemd-analyze verify` and keep their
//! hardening, and the Debian package built by cargo-deb holds the binary,
//! both units, the examples and the maintainer scripts.
//!
//! Tools: `systemd-analyze` (apt `systemd`), `dpkg-deb` (apt `dpkg`) and
//! `cargo deb` (`cargo install cargo-deb`). Missing tools skip a test with the
//! reason printed, unless `VON_REQUIRE_DEB=1`, which turns a skip into a
//! failure (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNITS: [&str; 2] = ["von.service", "von-keymgr.service"];
const EXAMPLES: [&str; 4] = [
    "grid.view.toml",
    "keymgr.toml",
    "von-keymgr.toml",
    "von-static.toml",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn packaging(rel: &str) -> PathBuf {
    workspace().join("packaging").join(rel)
}

/// Whether `tool --version` runs; if not, skip (printing why) or, under
/// `VON_REQUIRE_DEB=1`, fail.
fn have(tool: &[&str], install: &str) -> bool {
    let ok = Command::new(tool[0])
        .args(&tool[1..])
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var("VON_REQUIRE_DEB").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "VON_REQUIRE_DEB=1 but `{}` is missing: {install}",
            tool.join(" ")
        );
        eprintln!(
            "SKIPPED: `{}` is not installed ({install}; set VON_REQUIRE_DEB=1 to make this a failure)",
            tool.join(" ")
        );
    }
    ok
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory under the target directory, emptied first.
fn scratch(tag: &str) -> PathBuf {
    let dir = workspace()
        .join("target")
        .join(format!("von-packaging-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `systemd-analyze verify` on `units` (files that name `/usr/bin/von`),
/// with ExecStart pointed at `binary` so the check does not depend on von
/// being installed on this machine. Any output is a finding, hence a failure.
fn verify_units(units: &[PathBuf], binary: &Path, dir: &Path) {
    let mut copies = Vec::new();
    for unit in units {
        let text = std::fs::read_to_string(unit).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/von "),
            "{}: ExecStart must run /usr/bin/von",
            unit.display()
        );
        let copy = dir.join(unit.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace("/usr/bin/von", &binary.display().to_string()),
        )
        .unwrap();
        copies.push(copy);
    }
    let out = run(Command::new("systemd-analyze").arg("verify").args(&copies));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify found:\n{said}"
    );
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have(&["systemd-analyze"], "apt-get install systemd") {
        return;
    }
    let dir = scratch("verify");
    let units: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| packaging(&format!("systemd/{u}")))
        .collect();
    // Any executable stands in for /usr/bin/von: this test's own binary.
    verify_units(&units, &std::env::current_exe().unwrap(), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn units_keep_their_hardening() {
    let common = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "RestartSec=2s",
        "StartLimitIntervalSec=60s",
        "StartLimitBurst=5",
        "SystemCallFilter=@system-service",
    ];
    let agent = std::fs::read_to_string(packaging("systemd/von.service")).unwrap();
    for line in common.iter().chain(&[
        "ExecStart=/usr/bin/von up --config /etc/von/von.toml",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
        "StateDirectory=von",
        "RuntimeDirectory=von",
        "DevicePolicy=closed",
        "DeviceAllow=/dev/net/tun rw",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    ]) {
        assert!(
            agent.lines().any(|l| l == *line),
            "von.service lacks {line:?}"
        );
    }
    let keymgr = std::fs::read_to_string(packaging("systemd/von-keymgr.service")).unwrap();
    for line in common.iter().chain(&[
        "ExecStart=/usr/bin/von keymgr --config /etc/von/keymgr.toml",
        "CapabilityBoundingSet=",
        "PrivateDevices=yes",
        "StateDirectory=von/keymgr",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ]) {
        assert!(
            keymgr.lines().any(|l| l == *line),
            "von-keymgr.service lacks {line:?}"
        );
    }
}

#[test]
fn debian_package_holds_binary_units_and_examples() {
    if !have(&["cargo", "deb"], "cargo install cargo-deb")
        || !have(&["dpkg-deb"], "apt-get install dpkg")
    {
        return;
    }
    let dir = scratch("deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(workspace())
        .args(["deb", "-p", "von-agent", "--output"])
        .arg(&dir));
    let deb = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote no .deb");
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("von_"),
        "package is named {name}, expected von_*"
    );

    let listing =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout).unwrap();
    let has = |path: &str| listing.lines().any(|l| l.ends_with(path));
    let mut wanted = vec!["./usr/bin/von".to_owned()];
    wanted.extend(UNITS.iter().map(|u| format!("/systemd/system/{u}")));
    wanted.extend(
        EXAMPLES
            .iter()
            .map(|e| format!("./usr/share/doc/von/examples/{e}")),
    );
    for path in &wanted {
        assert!(has(path), "{name} lacks {path}; it holds:\n{listing}");
    }
    let bin = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/von"))
        .unwrap();
    assert!(
        bin.starts_with("-rwxr-xr-x"),
        "von is not executable: {bin}"
    );

    // The packaged files are the repository's, and the units still verify.
    let root = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for e in EXAMPLES {
        let packaged = std::fs::read(root.join("usr/share/doc/von/examples").join(e)).unwrap();
        assert_eq!(
            packaged,
            std::fs::read(packaging(&format!("examples/{e}"))).unwrap(),
            "{e} differs"
        );
    }
    let unit_dir = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("von.service").exists())
        .expect("no unit directory in the package");
    let units: Vec<PathBuf> = UNITS.iter().map(|u| unit_dir.join(u)).collect();
    for (unit, name) in units.iter().zip(UNITS) {
        assert_eq!(
            std::fs::read(unit).unwrap(),
            std::fs::read(packaging(&format!("systemd/{name}"))).unwrap(),
            "{name} differs"
        );
    }
    let version = run(Command::new(root.join("usr/bin/von")).arg("--version")).stdout;
    assert!(
        String::from_utf8_lossy(&version).starts_with("von "),
        "packaged von --version said {version:?}"
    );
    if have(&["systemd-analyze"], "apt-get install systemd") {
        verify_units(&units, &root.join("usr/bin/von"), &dir);
    }

    // Maintainer scripts: /etc/von is created, units installed but not enabled.
    let control = dir.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(
        postinst.contains("install -d -m 0755 /etc/von"),
        "postinst:\n{postinst}"
    );
    assert!(
        postinst.contains("von-keymgr.service"),
        "postinst does not handle von-keymgr.service:\n{postinst}"
    );
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "postinst kept the #DEBHELPER# token"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
