//! Router control over mutual TLS on loopback, with certificates from von's
//! own CA code: the right `reserve` and `router` certificates talk; a wrong
//! role, another CA, another router's name and a revoked certificate are
//! each refused, and a revocation takes effect at the next connection.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use time::{Duration, OffsetDateTime};
use von_crypto::OnId;
use von_crypto::cert::{Ca, IssueRequest, MemberName, Role, inspect, pem_to_der};
use von_router::auth::{self, TlsFiles};
use von_router::net;
use von_router::proto::{Request, Response};

struct Pki {
    dir: PathBuf,
    ca: Ca,
    prefix: &'static str,
}

impl Pki {
    fn new(dir: &Path, von: &str, prefix: &'static str) -> Self {
        let now = OffsetDateTime::now_utc() - Duration::minutes(1);
        let ca = Ca::create(von.parse().unwrap(), OnId(1), now, 30).unwrap();
        let dir = dir.join(von);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        Self { dir, ca, prefix }
    }

    /// Issues `name` with `role`; returns its files and serial.
    fn issue(&self, role: Role, name: &str, revoked: Option<&Path>) -> (TlsFiles, String) {
        let now = OffsetDateTime::now_utc() - Duration::minutes(1);
        let issued = self
            .ca
            .issue(&IssueRequest {
                role,
                name: name.parse::<MemberName>().unwrap(),
                member_id: von_crypto::MemberId(7),
                addr: self.prefix.parse().unwrap(),
                not_before: now,
                not_after: now + Duration::days(1),
            })
            .unwrap();
        let (cert, key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, issued.tls_key_pem.as_bytes()).unwrap();
        let serial = inspect(&pem_to_der(&issued.cert_pem, "cert").unwrap())
            .unwrap()
            .serial;
        (
            TlsFiles {
                ca: self.dir.join("ca.crt"),
                cert,
                key,
                revoked: revoked.map(Path::to_owned),
            },
            serial,
        )
    }
}

struct Router {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Router {
    fn start(files: &TlsFiles) -> Self {
        let tls = auth::router_server(files).expect("router TLS");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(|req: Request| match req {
            Request::Release { on_id } => Response::Refused {
                reason: format!("nothing for {on_id}"),
            },
            _ => Response::Ok,
        });
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            net::serve_router(listener, tls, s, handler).unwrap();
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn call(files: &TlsFiles, router: &str, addr: SocketAddr) -> Result<Response, String> {
    let tls = auth::service_client(files, Some(router)).map_err(|e| e.to_string())?;
    net::call(router, addr, &tls, &Request::Release { on_id: 7 }).map_err(|e| e.to_string())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("von-router-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn only_the_right_roles_names_and_ca_talk() {
    let d = tmp("roles");
    let pki = Pki::new(&d, "infra", "100.64.0.1/24");
    let other = Pki::new(&d, "rogue", "100.64.0.1/24");
    let (r1, _) = pki.issue(Role::Router, "r1", None);
    let (rs1, _) = pki.issue(Role::Reserve, "rs1", None);
    let router = Router::start(&r1);

    // The right ones: a reservation service to router r1.
    assert_eq!(
        call(&rs1, "r1", router.addr).expect("accepted"),
        Response::Refused {
            reason: "nothing for 7".into()
        }
    );

    // A member's, a key manager's and another router's certificate are not
    // a reservation service's: the router refuses the handshake. A client
    // config cannot even be built from a non-reserve certificate, so the
    // test builds the client with the keymgr crate's policy directly.
    for (role, name) in [
        (Role::Member, "h1"),
        (Role::Keymgr, "km"),
        (Role::Router, "r2"),
    ] {
        let (files, _) = pki.issue(role, name, None);
        let err = auth::service_client(&files, Some("r1")).unwrap_err();
        assert!(
            err.to_string().contains("needs a reserve certificate"),
            "{err}"
        );
        let (material, _) =
            von_keymgr::files::load_tls(role, &files.ca, &files.cert, &files.key).unwrap();
        let tls = von_keymgr::tls::client_config_for(
            material,
            von_keymgr::tls::PeerPolicy::role(Role::Router),
            auth::ALPN,
        )
        .unwrap();
        let err = net::call("r1", router.addr, &Arc::new(tls), &Request::Status)
            .expect_err("a non-reserve client");
        eprintln!("{role:?} as client: {err}");
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    // Another CA's reservation service is refused by the router, and its
    // router by our service.
    let (rogue_rs, _) = other.issue(Role::Reserve, "rs1", None);
    let err = call(&rogue_rs, "r1", router.addr).expect_err("another CA");
    eprintln!("other CA's service: {err}");
    let (rogue_r1, _) = other.issue(Role::Router, "r1", None);
    let rogue = Router::start(&rogue_r1);
    let err = call(&rs1, "r1", rogue.addr).expect_err("another CA's router");
    assert!(err.contains("issued by"), "{err}");

    // Our CA's router r2 cannot answer for r1.
    let (r2, _) = pki.issue(Role::Router, "r2", None);
    let impostor = Router::start(&r2);
    let err = call(&rs1, "r1", impostor.addr).expect_err("r2 answering as r1");
    assert!(err.contains("expected") && err.contains("r1"), "{err}");
    assert!(call(&rs1, "r2", impostor.addr).is_ok(), "r2 as r2");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_revoked_service_or_router_is_refused_at_the_next_connection() {
    let d = tmp("revoked");
    let pki = Pki::new(&d, "infra", "100.64.0.1/24");
    let list = d.join("revoked.txt");
    std::fs::write(&list, "# empty\n").unwrap();
    let (r1, r1_serial) = pki.issue(Role::Router, "r1", Some(&list));
    let (rs1, rs1_serial) = pki.issue(Role::Reserve, "rs1", Some(&list));
    let (rs2, _) = pki.issue(Role::Reserve, "rs2", Some(&list));
    let router = Router::start(&r1);
    assert!(call(&rs1, "r1", router.addr).is_ok());
    let tls1 = auth::service_client(&rs1, Some("r1")).unwrap();

    // Revoke rs1 while both run: its next connection is refused (the
    // client config built before still presents the revoked certificate).
    std::fs::write(&list, format!("{rs1_serial} rs1 reserve\n")).unwrap();
    let err = net::call("r1", router.addr, &tls1, &Request::Status).expect_err("revoked rs1");
    eprintln!("revoked service: {err}");
    assert!(err.to_string().to_lowercase().contains("revoked"), "{err}");
    assert!(call(&rs2, "r1", router.addr).is_ok(), "rs2 is not revoked");
    // And a revoked certificate is refused at load, with the fix.
    let err = auth::service_client(&rs1, Some("r1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("revocation list") && err.contains("von cert issue"),
        "{err}"
    );

    // Revoke the router: the service refuses it.
    let tls2 = auth::service_client(&rs2, Some("r1")).unwrap();
    std::fs::write(
        &list,
        format!("{rs1_serial} rs1 reserve\n{r1_serial} r1 router\n"),
    )
    .unwrap();
    let err = net::call("r1", router.addr, &tls2, &Request::Status).expect_err("revoked r1");
    assert!(err.to_string().contains("is revoked"), "{err}");

    // A list that cannot be read fails closed.
    std::fs::write(&list, "not-a-serial!\n").unwrap();
    assert!(net::call("r1", router.addr, &tls2, &Request::Status).is_err());
    let _ = std::fs::remove_dir_all(d);
}
