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
        &[
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
        ],
        &d,
    );
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    let first = read(&d.join("ca/ca.crt"));
    let err = fails(
        &[
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
        ],
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
            "--force",
        ],
        &d,
    );
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_ne!(read(&d.join("ca/ca.crt")), first);
    let err = fails(
        &[
            "ca",
            "init",
            "--von",
            "grid",
            "--on-id",
            "0",
            "--prefix",
            "100.64.0.0/24",
            "--out",
            "x",
        ],
        &d,
    );
    assert!(err.contains("--on-id 0 is reserved"), "{err}");
    let err = fails(
        &[
            "ca",
            "init",
            "--von",
            "Grid!",
            "--on-id",
            "7",
            "--prefix",
            "100.64.0.0/24",
            "--out",
            "x",
        ],
        &d,
    );
    assert!(err.contains("bad VON name"), "{err}");
}

#[test]
fn issue_writes_keys_and_a_certificate_that_verifies() {
    let d = dir("issue");
    ok(
        &[
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
        &[
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
    let ledger: serde_json::Value = serde_json::from_str(&read(&d.join("ca/ledger.json"))).unwrap();
    assert_eq!(ledger["issued"].as_array().unwrap().len(), 2, "{ledger}");
    let shown = ok(&["cert", "show", "out/km.crt"], &d);
    assert!(shown.contains("role         keymgr"), "{shown}");
}

#[test]
fn bad_input_gets_a_clear_message() {
    let d = dir("bad");
    ok(
        &[
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
        ],
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

fn issue(d: &Path, name: &str, addr: &str) -> Result<String, String> {
    let out = von(
        &[
            "cert", "issue", "--ca", "ca", "--name", name, "--addr", addr, "--out", "out",
        ],
        d,
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Issue 11, item 4: the CA knows the VON prefix and what it issued.
#[test]
fn the_ca_refuses_addresses_outside_its_prefix_and_duplicates_and_lists_its_ledger() {
    let d = dir("ledger");
    ok(
        &[
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
        ],
        &d,
    );
    issue(&d, "h1", "100.64.0.1/24").unwrap();
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
            "--out",
            "out",
        ],
        &d,
    );
    for (name, addr, says) in [
        (
            "h2",
            "100.64.1.2/24",
            "not a host address of the VON prefix 100.64.0.0/24",
        ),
        (
            "h2",
            "100.64.0.2/16",
            "not a host address of the VON prefix 100.64.0.0/24",
        ),
        ("h2", "100.64.0.1/24", "already issued to h1"),
    ] {
        let err = issue(&d, name, addr).unwrap_err();
        assert!(err.contains(says), "{name} {addr}: {err}");
        assert!(
            !d.join(format!("out/{name}.crt")).exists(),
            "nothing written for {name}"
        );
    }
    issue(&d, "h2", "100.64.0.2/24").unwrap();

    let table = ok(&["cert", "list", "--ca", "ca"], &d);
    assert!(
        table.contains("prefix 100.64.0.0/24: 3 certificates"),
        "{table}"
    );
    for row in ["h1", "h2", "km"] {
        assert!(
            table.lines().any(|l| l.contains(&format!(" {row} "))),
            "{row} in\n{table}"
        );
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains(" km ") && l.contains("keymgr") && l.contains("100.64.0.254")),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["cert", "list", "--ca", "ca", "--json"], &d)).unwrap();
    assert_eq!(json["prefix"], "100.64.0.0/24");
    let issued = json["issued"].as_array().unwrap();
    assert_eq!(issued.len(), 3);
    let h1 = issued.iter().find(|e| e["name"] == "h1").unwrap();
    assert_eq!(h1["address"], "100.64.0.1");
    let crt =
        cert::inspect(&cert::pem_to_der(&read(&d.join("out/h1.crt")), "h1").unwrap()).unwrap();
    assert_eq!(h1["serial"], crt.serial.as_str());
    assert_eq!(
        h1["member_id"],
        crt.extension.holder.identity().unwrap().member_id.0
    );
}

/// A CA directory from before the ledger is refused with the upgrade
/// command, and upgrading it from its certificates restores the checks.
#[test]
fn an_old_ca_directory_is_refused_until_upgraded() {
    let d = dir("upgrade");
    ok(
        &[
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
        ],
        &d,
    );
    issue(&d, "h1", "100.64.0.1/24").unwrap();
    // What an older von left: no ledger.json, an issued.txt.
    let ledger: serde_json::Value = serde_json::from_str(&read(&d.join("ca/ledger.json"))).unwrap();
    let e = &ledger["issued"][0];
    std::fs::write(
        d.join("ca/issued.txt"),
        format!(
            "{} h1 member {}\n",
            e["member_id"],
            e["serial"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::remove_file(d.join("ca/ledger.json")).unwrap();
    let err = issue(&d, "h2", "100.64.0.2/24").unwrap_err();
    assert!(err.contains("von ca upgrade --ca ca --prefix"), "{err}");
    let out = von(
        &["ca", "upgrade", "--ca", "ca", "--prefix", "100.64.0.0/24"],
        &d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("h1 without a certificate"),
        "{err}"
    );
    ok(
        &[
            "ca",
            "upgrade",
            "--ca",
            "ca",
            "--prefix",
            "100.64.0.0/24",
            "out/h1.crt",
        ],
        &d,
    );
    assert!(
        issue(&d, "h2", "100.64.0.1/24")
            .unwrap_err()
            .contains("already issued to h1")
    );
    issue(&d, "h2", "100.64.0.2/24").unwrap();
}

/// A CA key group or others can read is refused, as ssh refuses such keys.
#[test]
fn a_readable_ca_key_is_refused_with_the_chmod() {
    let d = dir("cakey");
    ok(
        &[
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
        ],
        &d,
    );
    std::fs::set_permissions(d.join("ca/ca.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = issue(&d, "h1", "100.64.0.1/24").unwrap_err();
    assert!(err.contains("ca/ca.key is a private key readable by group or others (mode 0640); run `chmod 600 ca/ca.key`"), "{err}");
    std::fs::set_permissions(d.join("ca/ca.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    issue(&d, "h1", "100.64.0.1/24").unwrap();
}

#[test]
fn router_and_reserve_certificates_and_revocation() {
    let d = dir("router-roles");
    let run = |args: &str| ok(&args.split(' ').collect::<Vec<_>>(), &d);
    run("ca init --von infra --on-id 1 --prefix 100.127.0.0/24 --out ca");
    // No --addr, no noise key; the ledger records both and reserves nothing.
    let said = run("cert issue --ca ca --role router --name r1 --out out");
    assert!(said.starts_with("router r1 of VON infra"), "{said}");
    run("cert issue --ca ca --role reserve --name rs1 --out out");
    assert!(!d.join("out/r1.noise.key").exists());
    assert_eq!(mode(&d.join("out/r1.key")), 0o600);
    let info = |f: &str| cert::inspect(&cert::pem_to_der(&read(&d.join(f)), "c").unwrap()).unwrap();
    let (r1, rs1) = (info("out/r1.crt"), info("out/rs1.crt"));
    assert_eq!(r1.extension.holder.role(), Role::Router);
    assert_eq!(rs1.extension.holder.role(), Role::Reserve);
    let shown = run("cert show out/r1.crt");
    assert!(shown.starts_with("role         router"), "{shown}");
    // A member may still take the address the router certificate carries.
    run("cert issue --ca ca --name h1 --addr 100.127.0.1/24 --out out");
    let list = run("cert list --ca ca");
    assert!(
        list.contains(" router ") && list.contains(" reserve "),
        "{list}"
    );

    // Revoke r1: the ledger and revoked.txt name its serial; twice is fine.
    let said = run("cert revoke --ca ca --name r1");
    assert!(
        said.starts_with(&format!("revoked router r1 (serial {})", r1.serial)),
        "{said}"
    );
    let said = run("cert revoke --ca ca --name r1");
    assert!(said.starts_with("already revoked:"), "{said}");
    let listed = read(&d.join("ca/revoked.txt"));
    assert!(
        listed.contains(&format!("{} r1 router\n", r1.serial)),
        "{listed}"
    );
    let ledger: serde_json::Value = serde_json::from_str(&read(&d.join("ca/ledger.json"))).unwrap();
    assert_eq!(ledger["revoked"][0]["serial"], r1.serial.as_str());
    // Reissued, r1 has a new serial that is not on the list.
    run("cert issue --ca ca --role router --name r1 --out out --force");
    assert_ne!(info("out/r1.crt").serial, r1.serial);
    let err = fails(&["cert", "revoke", "--ca", "ca", "--name", "nobody"], &d);
    assert!(
        err.contains("\"nobody\" is not in this CA's ledger"),
        "{err}"
    );
}
