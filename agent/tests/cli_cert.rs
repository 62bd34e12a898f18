//! The operator contract for certificates, driven through the built `von`
//! binary in a fresh directory per test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use von_crypto::cert::{self, Holder, Role};

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_cert-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn von(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_von"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let out = von(args, cwd);
    assert!(
        out.status.success(),
        "von {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str], cwd: &Path) -> String {
    let out = von(args, cwd);
    assert!(!out.status.success(), "von {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn ca_init_writes_a_private_key_and_refuses_to_overwrite() {
    let d = dir("ca");
    ok(
        &["ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca"],
        &d,
    );
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    let first = read(&d.join("ca/ca.crt"));
    let err = fails(
        &["ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca"],
        &d,
    );
    assert!(err.contains("ca/ca.key exists; pass --force"), "{err}");
    assert_eq!(
        read(&d.join("ca/ca.crt")),
        first,
        "refusal must not touch the old CA"
    );
    // --force replaces, and a replaced key is again 0600 even if the old one was not.
    std::fs::set_permissions(d.join("ca/ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(
        &[
            "ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca", "--force",
        ],
        &d,
    );
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_ne!(read(&d.join("ca/ca.crt")), first);
    let err = fails(
        &["ca", "init", "--von", "grid", "--on-id", "0", "--out", "x"],
        &d,
    );
    assert!(err.contains("--on-id 0 is reserved"), "{err}");
    let err = fails(
        &["ca", "init", "--von", "Grid!", "--on-id", "7", "--out", "x"],
        &d,
    );
    assert!(err.contains("bad VON name"), "{err}");
}

#[test]
fn issue_writes_keys_and_a_certificate_that_verifies() {
    let d = dir("issue");
    ok(
        &["ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca"],
        &d,
    );
    ok(
        &[
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
        ],
        &d,
    );
    assert_eq!(mode(&d.join("h1/h1.key")), 0o600);
    assert_eq!(mode(&d.join("h1/h1.noise.key")), 0o600);

    let ca = cert::pem_to_der(&read(&d.join("ca/ca.crt")), "ca").unwrap();
    let leaf = cert::pem_to_der(&read(&d.join("h1/h1.crt")), "h1").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let info = cert::verify(&ca, &leaf, &"grid".parse().unwrap(), now).unwrap();
    let Holder::Member(id) = &info.extension.holder else {
        panic!("{:?}", info.extension)
    };
    assert_eq!(id.addr.to_string(), "100.64.0.1/24");
    // The noise key file is the secret for the public key in the certificate.
    let secret =
        von_crypto::wrap::NoiseSecret::from_file_text(&read(&d.join("h1/h1.noise.key"))).unwrap();
    assert_eq!(secret.public(), id.noise_public);
    // Default validity: 365 days.
    assert_eq!((info.not_after - info.not_before).whole_days(), 365);

    let shown = ok(&["cert", "show", "h1/h1.crt"], &d);
    for expected in [
        "role         member",
        "von          grid (ON id 7)",
        "name         h1",
        "address      100.64.0.1/24",
        &format!("member id    {}", id.member_id.0),
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }
    let err = fails(
        &[
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
        ],
        &d,
    );
    assert!(err.contains("h1/h1.key exists; pass --force"), "{err}");
}

#[test]
fn keymgr_role_valid_days_and_member_ids() {
    let d = dir("roles");
    ok(
        &["ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca"],
        &d,
    );
    ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--name",
            "km",
            "--addr",
            "100.64.0.254/24",
            "--role",
            "keymgr",
            "--valid",
            "30",
            "--out",
            "out",
        ],
        &d,
    );
    ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--name",
            "h2",
            "--addr",
            "100.64.0.2/24",
            "--out",
            "out",
        ],
        &d,
    );
    let km = cert::inspect(&cert::pem_to_der(&read(&d.join("out/km.crt")), "km").unwrap()).unwrap();
    assert_eq!(km.extension.holder.role(), Role::Keymgr);
    assert_eq!((km.not_after - km.not_before).whole_days(), 30);
    let id_of = |file: &str| {
        let info = cert::inspect(&cert::pem_to_der(&read(&d.join(file)), "c").unwrap()).unwrap();
        info.extension.holder.identity().unwrap().member_id
    };
    let h2 = id_of("out/h2.crt");
    assert_ne!(id_of("out/km.crt"), h2);
    // Re-issuing a name (renewal) keeps its member id.
    ok(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--name",
            "h2",
            "--addr",
            "100.64.0.2/24",
            "--out",
            "out",
            "--force",
        ],
        &d,
    );
    assert_eq!(id_of("out/h2.crt"), h2);
    assert_eq!(read(&d.join("ca/issued.txt")).lines().count(), 2);
    let shown = ok(&["cert", "show", "out/km.crt"], &d);
    assert!(shown.contains("role         keymgr"), "{shown}");
}

#[test]
fn bad_input_gets_a_clear_message() {
    let d = dir("bad");
    ok(
        &["ca", "init", "--von", "grid", "--on-id", "7", "--out", "ca"],
        &d,
    );
    for (addr, says) in [
        ("8.8.8.8/24", "inside 100.64.0.0/10"),
        ("100.64.0.0/24", "network address"),
        ("100.64.0.1", "ADDRESS/PREFIX"),
        ("100.64.0.1/31", "/30 or wider"),
    ] {
        let err = fails(
            &[
                "cert", "issue", "--ca", "ca", "--name", "h1", "--addr", addr, "--out", "h1",
            ],
            &d,
        );
        assert!(err.contains(says) && err.contains(addr), "{addr}: {err}");
    }
    assert!(!d.join("h1/h1.key").exists());
    let err = fails(
        &[
            "cert",
            "issue",
            "--ca",
            "ca",
            "--name",
            "h1",
            "--addr",
            "100.64.0.1/24",
            "--valid",
            "4000",
            "--out",
            "h1",
        ],
        &d,
    );
    assert!(err.contains("not inside the CA's"), "{err}");
    let err = fails(
        &[
            "cert",
            "issue",
            "--ca",
            "nowhere",
            "--name",
            "h1",
            "--addr",
            "100.64.0.1/24",
            "--out",
            "h1",
        ],
        &d,
    );
    assert!(err.contains("nowhere/ca.crt"), "{err}");
    std::fs::write(d.join("junk.crt"), "not a certificate").unwrap();
    let err = fails(&["cert", "show", "junk.crt"], &d);
    assert!(err.contains("cannot read certificate"), "{err}");
}
