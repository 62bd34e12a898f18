//! Issue, read back and verify certificates; one test per refusal, each
//! checking that the error carries its values.

use time::{Duration, OffsetDateTime, macros::datetime};
use von_crypto::cert::{
    self, CA_VALIDITY_DAYS, Ca, CertError, Holder, IssueRequest, Role, VON_EXTENSION_OID, VonName,
};
use von_crypto::{MemberId, OnId};

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn von(name: &str) -> VonName {
    name.parse().unwrap()
}

fn ca(name: &str) -> Ca {
    Ca::create(von(name), OnId(7), NOW, CA_VALIDITY_DAYS).unwrap()
}

fn request(role: Role, days: i64) -> IssueRequest {
    IssueRequest {
        role,
        name: "h1".parse().unwrap(),
        member_id: MemberId(0x0102_0304),
        addr: "100.64.0.1/24".parse().unwrap(),
        not_before: NOW,
        not_after: NOW + Duration::days(days),
    }
}

fn der(pem: &str) -> Vec<u8> {
    cert::pem_to_der(pem, "test certificate").unwrap()
}

#[test]
fn issued_member_verifies_and_says_what_was_asked() {
    let ca = ca("grid");
    let issued = ca.issue(&request(Role::Member, 365)).unwrap();
    let info = cert::verify(
        &der(ca.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap();
    assert_eq!(info.extension.von, von("grid"));
    assert_eq!(info.extension.on_id, OnId(7));
    let Holder::Member(id) = &info.extension.holder else {
        panic!("not a member: {:?}", info.extension.holder)
    };
    assert_eq!(id.name.as_str(), "h1");
    assert_eq!(id.member_id, MemberId(0x0102_0304));
    assert_eq!(id.addr.to_string(), "100.64.0.1/24");
    assert_eq!(id.noise_public, issued.noise_secret.public());
    assert_eq!(info.not_after, NOW + Duration::days(365));
    assert_eq!(info.key_algorithm, "ECDSA P-256");
    assert!(!info.is_ca);
    assert!(
        issued
            .tls_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
}

#[test]
fn keymgr_role_is_kept() {
    let ca = ca("grid");
    let issued = ca.issue(&request(Role::Keymgr, 30)).unwrap();
    let info = cert::verify(
        &der(ca.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap();
    assert_eq!(info.extension.holder.role(), Role::Keymgr);
}

#[test]
fn ca_reloaded_from_pem_issues_verifiable_certificates() {
    let first = ca("grid");
    let again = Ca::from_pem(first.cert_pem(), &first.key_pem()).unwrap();
    let issued = again.issue(&request(Role::Member, 10)).unwrap();
    cert::verify(
        &der(first.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap();
}

#[test]
fn expired_carries_not_after_and_now() {
    let ca = ca("grid");
    let issued = ca.issue(&request(Role::Member, 1)).unwrap();
    let later = NOW + Duration::days(1) + Duration::seconds(1);
    let err = cert::verify(
        &der(ca.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        later,
    )
    .unwrap_err();
    assert_eq!(
        err,
        CertError::Expired {
            subject: "O=von grid, CN=h1".to_owned(),
            not_after: NOW + Duration::days(1),
            now: later,
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("2026-03-02T12:00:00Z") && text.contains("2026-03-02T12:00:01Z"),
        "{text}"
    );
}

#[test]
fn not_yet_valid_carries_not_before_and_now() {
    let ca = ca("grid");
    let mut req = request(Role::Member, 10);
    req.not_before = NOW + Duration::days(2);
    let issued = ca.issue(&req).unwrap();
    let err = cert::verify(
        &der(ca.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW + Duration::days(1),
    )
    .unwrap_err();
    assert!(
        matches!(err, CertError::NotYetValid { not_before, now, .. }
        if not_before == NOW + Duration::days(2) && now == NOW + Duration::days(1)),
        "{err:?}"
    );
}

#[test]
fn another_von_is_refused_with_both_names() {
    let other = ca("water");
    let issued = other.issue(&request(Role::Member, 10)).unwrap();
    let err = cert::verify(
        &der(other.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        CertError::VonMismatch {
            subject: "O=von water, CN=von CA water".to_owned(),
            expected: "grid".to_owned(),
            found: "water (ON id 7)".to_owned(),
        }
    );
}

#[test]
fn certificate_of_another_ca_is_refused() {
    let grid = ca("grid");
    let water = ca("water");
    let issued = water.issue(&request(Role::Member, 10)).unwrap();
    let err = cert::verify(
        &der(grid.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        CertError::IssuerMismatch {
            subject: "O=von water, CN=h1".to_owned(),
            issuer: "O=von water, CN=von CA water".to_owned(),
            ca: "O=von grid, CN=von CA grid".to_owned(),
        }
    );
}

#[test]
fn look_alike_ca_fails_the_signature_check() {
    // Same VON name, so the same issuer name, but another key.
    let real = ca("grid");
    let fake = ca("grid");
    let issued = fake.issue(&request(Role::Member, 10)).unwrap();
    let err = cert::verify(
        &der(real.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CertError::BadSignature { subject, ca, .. }
        if subject == "O=von grid, CN=h1" && ca == "O=von grid, CN=von CA grid"),
        "{err:?}"
    );
}

#[test]
fn altered_signature_is_refused() {
    let ca = ca("grid");
    let issued = ca.issue(&request(Role::Member, 10)).unwrap();
    let mut cert = der(&issued.cert_pem);
    let last = cert.len() - 1;
    cert[last] ^= 0x01;
    let err = cert::verify(&der(ca.cert_pem()), &cert, &von("grid"), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::BadSignature { .. } | CertError::Parse { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_ca_certificate_is_not_a_member() {
    let ca = ca("grid");
    let err =
        cert::verify(&der(ca.cert_pem()), &der(ca.cert_pem()), &von("grid"), NOW).unwrap_err();
    assert_eq!(
        err,
        CertError::WrongRole {
            subject: "O=von grid, CN=von CA grid".to_owned(),
            expected: "member or keymgr",
            found: "ca",
        }
    );
    assert!(matches!(
        ca.issue(&request(Role::Ca, 10)),
        Err(CertError::WrongRole { found: "ca", .. })
    ));
}

#[test]
fn a_member_certificate_cannot_be_loaded_as_ca() {
    let ca = ca("grid");
    let issued = ca.issue(&request(Role::Member, 10)).unwrap();
    let err = Ca::from_pem(&issued.cert_pem, &issued.tls_key_pem).unwrap_err();
    assert_eq!(
        err,
        CertError::WrongRole {
            subject: "O=von grid, CN=h1".to_owned(),
            expected: "ca",
            found: "member",
        }
    );
}

#[test]
fn ca_key_must_match_ca_certificate() {
    let a = ca("grid");
    let b = ca("grid");
    let err = Ca::from_pem(a.cert_pem(), &b.key_pem()).unwrap_err();
    assert_eq!(
        err,
        CertError::KeyMismatch {
            subject: "O=von grid, CN=von CA grid".to_owned()
        }
    );
}

#[test]
fn validity_must_lie_inside_the_ca() {
    let ca = Ca::create(von("grid"), OnId(7), NOW, 10).unwrap();
    let err = ca.issue(&request(Role::Member, 11)).unwrap_err();
    assert_eq!(
        err,
        CertError::BadValidity {
            not_before: NOW,
            not_after: NOW + Duration::days(11),
            ca_not_before: NOW,
            ca_not_after: NOW + Duration::days(10),
        }
    );
    assert!(matches!(
        ca.issue(&request(Role::Member, 0)),
        Err(CertError::BadValidity { .. })
    ));
}

#[test]
fn expired_ca_is_refused() {
    let ca = Ca::create(von("grid"), OnId(7), NOW, 2).unwrap();
    let issued = ca.issue(&request(Role::Member, 2)).unwrap();
    let later = NOW + Duration::days(3);
    let err = cert::verify(
        &der(ca.cert_pem()),
        &der(&issued.cert_pem),
        &von("grid"),
        later,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CertError::Expired { subject, .. } if subject == "O=von grid, CN=von CA grid"),
        "{err:?}"
    );
}

fn foreign_cert(critical: Option<bool>) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "foreign");
    if let Some(critical) = critical {
        let mut ext =
            rcgen::CustomExtension::from_oid_content(&VON_EXTENSION_OID, vec![0x30, 0x00]);
        ext.set_criticality(critical);
        params.custom_extensions = vec![ext];
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn certificate_without_the_extension_is_refused() {
    assert_eq!(
        cert::inspect(&foreign_cert(None)).unwrap_err(),
        CertError::ExtensionMissing {
            subject: "CN=foreign".to_owned()
        }
    );
}

#[test]
fn critical_extension_is_refused() {
    assert_eq!(
        cert::inspect(&foreign_cert(Some(true))).unwrap_err(),
        CertError::ExtensionCritical {
            subject: "CN=foreign".to_owned()
        }
    );
    assert!(matches!(
        cert::inspect(&foreign_cert(Some(false))).unwrap_err(),
        CertError::ExtensionMalformed { .. }
    ));
}

#[test]
fn garbage_is_a_parse_error() {
    assert!(matches!(
        cert::inspect(b"\x30\x03abc"),
        Err(CertError::Parse {
            what: "certificate",
            ..
        })
    ));
    assert!(matches!(
        cert::pem_to_der("hello", "CA certificate"),
        Err(CertError::Parse {
            what: "CA certificate",
            ..
        })
    ));
    let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let err = cert::pem_to_der(&key_pem, "CA certificate").unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
}
