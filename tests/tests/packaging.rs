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
use std::sync::OnceLock;

const UNITS: [&str; 2] = ["von.service", "von-keymgr.service"];
/// The replica templates (`von-keymgr@grid.service`, the reservation
/// service's `von-reserve@rs1.service`), packaged beside the units; each
/// verified through an instance name.
const TEMPLATES: [(&str, &str); 2] = [
    ("von-keymgr@.service", "von-keymgr@grid.service"),
    ("von-reserve@.service", "von-reserve@rs1.service"),
];
const EXAMPLES: [&str; 6] = [
    "grid.view.toml",
    "keymgr.toml",
    "reserve.toml",
    "router.toml",
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

/// Copies of the template units under instances' names, since
/// `systemd-analyze verify` checks instances, not templates.
fn template_instances(unit_dir: &Path, dir: &Path) -> Vec<PathBuf> {
    let instances = dir.join("instance");
    std::fs::create_dir_all(&instances).unwrap();
    TEMPLATES
        .iter()
        .map(|(template, name)| {
            let instance = instances.join(name);
            std::fs::copy(unit_dir.join(template), &instance).unwrap();
            instance
        })
        .collect()
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have(&["systemd-analyze"], "apt-get install systemd") {
        return;
    }
    let dir = scratch("verify");
    let mut units: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| packaging(&format!("systemd/{u}")))
        .collect();
    units.extend(template_instances(&packaging("systemd"), &dir));
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
    let reserve = std::fs::read_to_string(packaging("systemd/von-reserve@.service")).unwrap();
    for line in common.iter().chain(&[
        "ExecStart=/usr/bin/von reserve serve --config /etc/von/reserve-%i.toml",
        "CapabilityBoundingSet=",
        "PrivateDevices=yes",
        "RuntimeDirectory=von-reserve-%i",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ]) {
        assert!(
            reserve.lines().any(|l| l == *line),
            "von-reserve@.service lacks {line:?}"
        );
    }
}

/// The .deb, built once for every test here that needs it (`cargo deb`
/// takes a while); `None` when the tools are missing and the test skips.
fn debian_package() -> Option<&'static Path> {
    static DEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    DEB.get_or_init(|| {
        if !have(&["cargo", "deb"], "cargo install cargo-deb")
            || !have(&["dpkg-deb"], "apt-get install dpkg")
        {
            return None;
        }
        let dir = scratch("deb-build");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo)
            .current_dir(workspace())
            .args(["deb", "-p", "von-agent", "--output"])
            .arg(&dir));
        let deb = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.extension().is_some_and(|e| e == "deb") && !p.to_string_lossy().contains("dbgsym")
            })
            .expect("cargo deb wrote no .deb");
        Some(deb)
    })
    .as_deref()
}

#[test]
fn debian_package_holds_binary_units_and_examples() {
    let Some(deb) = debian_package() else {
        return;
    };
    let dir = scratch("deb");
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("von_"),
        "package is named {name}, expected von_*"
    );
    // The symbols stripped from the binary, in their own package.
    let dbgsym = std::fs::read_dir(deb.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("von-dbgsym_"))
        .expect("cargo deb wrote no von-dbgsym package");
    let symbols =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(&dbgsym)).stdout).unwrap();
    assert!(
        symbols
            .lines()
            .any(|l| l.contains("/usr/lib/debug/") && l.ends_with(".debug")),
        "{} holds no .debug file:\n{symbols}",
        dbgsym.display()
    );

    let listing =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-c").arg(deb)).stdout).unwrap();
    let has = |path: &str| listing.lines().any(|l| l.ends_with(path));
    let mut wanted = vec!["./usr/bin/von".to_owned()];
    wanted.extend(UNITS.iter().map(|u| format!("/systemd/system/{u}")));
    wanted.extend(
        TEMPLATES
            .iter()
            .map(|(t, _)| format!("/systemd/system/{t}")),
    );
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
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
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
    // The production binary links neither the netns harness nor the demo
    // (issue 14): their source paths, which panic locations keep even in a
    // stripped binary, are absent, while the agent's own are present (so
    // the search would see a linked crate), and `von demo` is no command.
    let packaged_bin = std::fs::read(root.join("usr/bin/von")).unwrap();
    let holds = |needle: &str| {
        packaged_bin
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        holds("agent/src/"),
        "no agent/src/ path in the packaged von: the check below would prove nothing"
    );
    for crate_dir in ["lab/src/", "demo/src/"] {
        assert!(!holds(crate_dir), "the packaged von links {crate_dir}");
    }
    let demo = Command::new(root.join("usr/bin/von"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(
        !demo.status.success()
            && String::from_utf8_lossy(&demo.stderr).contains("unrecognized subcommand"),
        "packaged `von demo` did not fail as an unknown command: {demo:?}"
    );
    if have(&["systemd-analyze"], "apt-get install systemd") {
        let mut units = units.clone();
        units.extend(template_instances(&unit_dir, &dir));
        verify_units(&units, &root.join("usr/bin/von"), &dir);
    }

    // Maintainer scripts: /etc/von is created, units installed but not enabled.
    let control = dir.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
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

/// What a Debian admin expects of the package, checked by installing it:
/// `dpkg -i`, `dpkg -r` and `dpkg -P` run in a chroot onto an overlay of
/// this machine's root file system, inside a private mount namespace, so
/// the machine itself (its dpkg database, /usr, /etc) is never changed and
/// every mount disappears with the namespace, pass or fail.
#[test]
fn debian_package_installs_removes_and_purges_cleanly() {
    let Some(deb) = debian_package() else {
        return;
    };
    if !have(&["unshare"], "apt-get install util-linux") {
        return;
    }
    let dir = scratch("install");
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-eu", "-c"])
        .arg(INSTALL_SCRIPT)
        .arg("install-test")
        .arg(&dir)
        .arg(deb));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    let state = |step: &str, path: &str| -> bool {
        let line = format!("{step} {path} ");
        let found = report
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("no {step} line for {path} in:\n{report}"));
        found.ends_with(" present")
    };
    let installed = [
        "/usr/bin/von",
        "/usr/share/man/man8/von.8.gz",
        "/usr/share/man/man8/von-up.8.gz",
        "/usr/share/man/man5/von.toml.5.gz",
        "/usr/share/bash-completion/completions/von",
        "/usr/share/zsh/vendor-completions/_von",
        "/usr/share/fish/vendor_completions.d/von.fish",
        "/usr/share/doc/von/README.md",
        "/usr/share/doc/von/docs/configuration.md",
        "/usr/share/doc/von/docs/crypto.md",
        "/usr/share/doc/von/examples/von-keymgr.toml",
        "/lib/systemd/system/von.service",
        "/lib/systemd/system/von-keymgr@.service",
        "/etc/von",
    ];
    for path in installed {
        assert!(state("installed", path), "not installed: {path}\n{report}");
        assert!(
            path == "/etc/von" || !state("removed", path),
            "`dpkg -r` left {path}\n{report}"
        );
    }
    // Stripped: no DWARF in the binary (the symbols are in von-dbgsym).
    // `.debug_gdb_scripts` stays: rustc puts it in a loaded segment.
    let debug_sections = report
        .lines()
        .find_map(|l| l.strip_prefix("debug_sections "))
        .expect("debug_sections line");
    assert_eq!(debug_sections, "0", "the packaged von is not stripped");
    for line in [
        "von_version ok",
        "man_finds_von /usr/share/man/man8/von.8.gz",
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "no {line:?} in:\n{report}"
        );
    }
    // remove keeps the operator's configuration and the state...
    for path in [
        "/etc/von/von.toml",
        "/etc/von/h1/h1.key",
        "/var/lib/von/grid",
    ] {
        assert!(state("removed", path), "`dpkg -r` deleted {path}\n{report}");
    }
    // ...purge removes them, but never a VON's CA key.
    for path in [
        "/etc/von/von.toml",
        "/etc/von/h1/h1.key",
        "/etc/von/h1",
        "/var/lib/von",
    ] {
        assert!(!state("purged", path), "`dpkg -P` left {path}\n{report}");
    }
    assert!(
        state("purged", "/etc/von/grid/ca/ca.key"),
        "`dpkg -P` deleted a CA key\n{report}"
    );
    assert!(
        said.contains("kept these CA directories") && said.contains("/etc/von/grid/ca"),
        "purge did not say which CA directory it kept:\n{said}"
    );
    assert!(
        report.lines().any(|l| l == "dpkg_status not-installed"),
        "dpkg still knows von after purge:\n{report}"
    );
}

/// `$1` scratch directory, `$2` the .deb. Prints `STEP PATH present|absent`
/// for each checked path after install, remove and purge.
const INSTALL_SCRIPT: &str = r#"
scratch=$1; deb=$2
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
mount --bind /proc "$scratch/root/proc"
mount --bind /dev "$scratch/root/dev"
root=$scratch/root
cp "$deb" "$root/von-under-test.deb"
paths="/usr/bin/von /usr/share/man/man8/von.8.gz /usr/share/man/man8/von-up.8.gz
 /usr/share/man/man5/von.toml.5.gz /usr/share/bash-completion/completions/von
 /usr/share/zsh/vendor-completions/_von /usr/share/fish/vendor_completions.d/von.fish
 /usr/share/doc/von/README.md /usr/share/doc/von/docs/configuration.md
 /usr/share/doc/von/docs/crypto.md /usr/share/doc/von/examples/von-keymgr.toml
 /lib/systemd/system/von.service /lib/systemd/system/von-keymgr@.service /etc/von
 /etc/von/von.toml /etc/von/h1 /etc/von/h1/h1.key /etc/von/grid/ca/ca.key
 /var/lib/von /var/lib/von/grid"
report() {
  for p in $paths; do
    if [ -e "$root$p" ]; then echo "$1 $p present"; else echo "$1 $p absent"; fi
  done
}
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# A von already installed on this machine would hide what the package does.
in_root dpkg -P von >/dev/null 2>&1 || true
rm -rf "$root/etc/von" "$root/var/lib/von"
in_root dpkg -i /von-under-test.deb >&2
report installed
echo "debug_sections $(readelf -S "$root/usr/bin/von" | grep -c '\.debug_\(info\|line\|str\)' || true)"
in_root von --version >/dev/null && echo "von_version ok"
echo "man_finds_von $(in_root man -w 8 von 2>/dev/null || echo none)"
# What an operator adds: a config, a member's key, a CA, state.
mkdir -p "$root/etc/von/h1" "$root/etc/von/grid/ca" "$root/var/lib/von/grid"
echo 'log = "info"' > "$root/etc/von/von.toml"
echo key > "$root/etc/von/h1/h1.key"
echo ca > "$root/etc/von/grid/ca/ca.key"
in_root dpkg -r von >&2
report removed
in_root dpkg -P von
report purged
if in_root dpkg -s von >/dev/null 2>&1; then echo "dpkg_status installed"; else echo "dpkg_status not-installed"; fi
"#;
