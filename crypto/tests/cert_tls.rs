//! The certificates serve TLS as they are: rustls's WebPKI verifiers accept a
//! member as a client and the key manager as the server `km.grid`, despite the
//! von extension (it is not critical), and refuse a member of another CA.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use time::macros::datetime;
use von_crypto::MemberId;
use von_crypto::OnId;
use von_crypto::cert::{self, Ca, IssueRequest, Role};

fn issue(ca: &Ca, role: Role, name: &str) -> CertificateDer<'static> {
    let now = datetime!(2026-03-01 12:00 UTC);
    let issued = ca
        .issue(&IssueRequest {
            role,
            name: name.parse().unwrap(),
            member_id: MemberId(1),
            addr: "100.64.0.1/24".parse().unwrap(),
            not_before: now,
            not_after: now + time::Duration::days(30),
        })
        .unwrap();
    cert::pem_to_der(&issued.cert_pem, "issued").unwrap().into()
}

#[test]
fn rustls_accepts_members_and_the_key_manager() {
    let now = datetime!(2026-03-01 12:00 UTC);
    let ca = Ca::create("grid".parse().unwrap(), OnId(7), now, 365).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert::pem_to_der(ca.cert_pem(), "ca").unwrap().into())
        .unwrap();
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let at = UnixTime::since_unix_epoch(Duration::from_secs((now.unix_timestamp() + 60) as u64));

    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap();
    clients
        .verify_client_cert(&issue(&ca, Role::Member, "h1"), &[], at)
        .unwrap();

    let servers = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    let km = issue(&ca, Role::Keymgr, "km");
    let name = ServerName::try_from("km.grid").unwrap();
    servers
        .verify_server_cert(&km, &[], &name, &[], at)
        .unwrap();
    let wrong = ServerName::try_from("h1.grid").unwrap();
    assert!(
        servers
            .verify_server_cert(&km, &[], &wrong, &[], at)
            .is_err()
    );

    let other = Ca::create("grid".parse().unwrap(), OnId(7), now, 365).unwrap();
    assert!(
        clients
            .verify_client_cert(&issue(&other, Role::Member, "h1"), &[], at)
            .is_err()
    );
}
