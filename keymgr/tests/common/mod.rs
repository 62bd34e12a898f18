//! A throwaway PKI on disk for the loopback tests: a VON's CA, a key
//! manager and members, written in the file layout `von cert issue` uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use von_crypto::cert::{Ca, IssueRequest, Role};
use von_crypto::{MemberId, OnId};
use von_keymgr::client::{Params as ClientParams, Session, Standing};
use von_keymgr::files;
use von_keymgr::member::MemberKeys;
use von_keymgr::server::{Params, Server};

pub const ON_ID: u32 = 7;

pub struct Pki {
    pub dir: PathBuf,
    pub ca: Ca,
}

impl Pki {
    pub fn new(tag: &str, von: &str) -> Self {
        // Logs show with `--nocapture` and RUST_LOG=info; errors if set twice.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = std::env::temp_dir().join(format!("von-km-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = OffsetDateTime::now_utc() - time::Duration::days(30);
        let ca = Ca::create(von.parse().unwrap(), OnId(ON_ID), now, 3650).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        Self { dir, ca }
    }

    /// Issue NAME with id `id`, valid from `from_days` to `to_days` (relative
    /// to now), and write NAME.crt, NAME.key, NAME.noise.key.
    pub fn issue(&self, role: Role, name: &str, id: u32, from_days: i64, to_days: i64) {
        let addr = format!("100.64.0.{}/24", id % 250 + 1);
        self.issue_at(role, name, id, &addr, from_days, to_days);
    }

    /// Like [`Pki::issue`], with the VON address `addr` (e.g. `100.64.1.9/24`).
    pub fn issue_at(
        &self,
        role: Role,
        name: &str,
        id: u32,
        addr: &str,
        from_days: i64,
        to_days: i64,
    ) {
        let now = OffsetDateTime::now_utc();
        let issued = self
            .ca
            .issue(&IssueRequest {
                role,
                name: name.parse().unwrap(),
                member_id: MemberId(id),
                addr: addr.parse().unwrap(),
                not_before: now + time::Duration::days(from_days),
                not_after: now + time::Duration::days(to_days),
            })
            .unwrap();
        std::fs::write(self.dir.join(format!("{name}.crt")), &issued.cert_pem).unwrap();
        std::fs::write(
            self.dir.join(format!("{name}.key")),
            issued.tls_key_pem.as_bytes(),
        )
        .unwrap();
        std::fs::write(
            self.dir.join(format!("{name}.noise.key")),
            issued.noise_secret.to_file_text().as_bytes(),
        )
        .unwrap();
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn keymgr_config(&self, von: &str) -> von_config::KeymgrConfig {
        let text = format!(
            r#"
von = "{von}"
on_id = {ON_ID}
listen = "127.0.0.1:4433"
state_dir = "{state}"
ca = "{ca}"
cert = "{dir}/km.crt"
key = "{dir}/km.key"
noise_key = "{dir}/km.noise.key"
[timers]
lease = "3s"
renew = "1s"
prepare_timeout = "2s"
grace = "1s"
"#,
            state = self.dir.join("state").display(),
            ca = self.dir.join("ca.crt").display(),
            dir = self.dir.display(),
        );
        von_config::KeymgrConfig::from_toml_str(&text, "test keymgr.toml").unwrap()
    }

    /// Start a key manager; returns its address and a stop switch.
    pub async fn start_keymgr(
        &self,
        von: &str,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let mut params = Params::from_config(&self.keymgr_config(von)).unwrap();
        // Tests run in parallel: let the OS pick the port.
        params.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(params).unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        (addr, stop, task)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a member's install callback saw: each send epoch, in order.
pub type Installs = Arc<Mutex<Vec<u32>>>;

/// A running member session.
pub struct RunningMember {
    pub installs: Installs,
    /// The session's "sequence limit near" input.
    #[allow(dead_code)] // not read by every test binary
    pub near: mpsc::UnboundedSender<von_crypto::Epoch>,
    /// The lease expiry the session last published.
    #[allow(dead_code)] // not read by every test binary
    pub lease: Arc<Mutex<Option<std::time::SystemTime>>>,
    /// Every standing the session published, in order.
    #[allow(dead_code)] // not read by every test binary
    pub standings: Arc<Mutex<Vec<Standing>>>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<MemberKeys>,
}

/// Start NAME's member session against `keymgr`, with the files in `pki`
/// (a different CA directory may be given for negative tests).
pub fn start_member(pki: &Pki, von: &str, name: &str, n: u8, keymgr: SocketAddr) -> RunningMember {
    let loaded = files::load(
        &von.parse().unwrap(),
        Role::Member,
        &pki.path("ca.crt"),
        &pki.path(&format!("{name}.crt")),
        &pki.path(&format!("{name}.key")),
        &pki.path(&format!("{name}.noise.key")),
    )
    .unwrap();
    start_loaded(loaded, n, keymgr)
}

pub fn start_loaded(loaded: files::Loaded, n: u8, keymgr: SocketAddr) -> RunningMember {
    let params = ClientParams {
        keymgr: vec![keymgr],
        tls: loaded.tls,
        noise: loaded.noise,
        on_id: OnId(ON_ID),
        underlay: von_config::UnderlayEndpoints::from_names([
            ("a", SocketAddr::from((Ipv4Addr::new(192, 0, 2, n), 4789))),
            (
                "b",
                SocketAddr::from((Ipv4Addr::new(198, 51, 100, n), 4789)),
            ),
        ])
        .unwrap(),
        backoff_max: Duration::from_secs(1),
    };
    let installs: Installs = Arc::default();
    let seen = installs.clone();
    let install = Box::new(move |keys: &MemberKeys| {
        if let Some((epoch, _)) = keys.keys().send {
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&epoch.0) {
                seen.push(epoch.0);
            }
        }
    });
    let (near, near_rx) = mpsc::unbounded_channel();
    let lease: Arc<Mutex<Option<std::time::SystemTime>>> = Arc::default();
    let published = lease.clone();
    let standings: Arc<Mutex<Vec<Standing>>> = Arc::default();
    let seen_standing = standings.clone();
    let session = Session::new(params, MemberKeys::new(), install, near_rx)
        .unwrap()
        .on_lease(Box::new(move |t| *published.lock().unwrap() = Some(t)))
        .on_standing(Box::new(move |s| {
            seen_standing.lock().unwrap().push(s.clone())
        }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(session.run(async {
        let _ = stopped.await;
    }));
    RunningMember {
        installs,
        near,
        lease,
        standings,
        stop,
        task,
    }
}

/// Wait until `f` holds, polling; panics with `what` after `secs`.
pub async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn last(i: &Installs) -> Option<u32> {
    i.lock().unwrap().last().copied()
}

/// Start NAME's session with its files loaded as they are, skipping the
/// member side's own certificate checks, so the key manager's are tested.
#[allow(dead_code)]
pub fn start_member_unchecked(pki: &Pki, name: &str, n: u8, keymgr: SocketAddr) -> RunningMember {
    start_loaded(load_unchecked(pki, name), n, keymgr)
}

#[allow(dead_code)]
pub fn load_unchecked(pki: &Pki, name: &str) -> files::Loaded {
    use rustls::pki_types::pem::PemObject;
    let der = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        rustls::pki_types::CertificateDer::from(
            von_crypto::cert::pem_to_der(&text, "test").unwrap(),
        )
    };
    let cert = der(&pki.path(&format!("{name}.crt")));
    let info = von_crypto::cert::inspect(&cert).unwrap();
    files::Loaded {
        tls: von_keymgr::tls::TlsMaterial {
            ca: der(&pki.path("ca.crt")),
            cert,
            key: rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key")))
                .unwrap(),
            von: "grid".parse().unwrap(),
        },
        noise: von_crypto::wrap::NoiseSecret::from_file_text(
            &std::fs::read_to_string(pki.path(&format!("{name}.noise.key"))).unwrap(),
        )
        .unwrap(),
        info,
    }
}

/// Connect without a client certificate and try to join; `Ok` would mean
/// the key manager answered.
#[allow(dead_code)]
pub async fn anonymous_connect(pki: &Pki, keymgr: SocketAddr) -> Result<String, String> {
    let loaded = load_unchecked(pki, "h1");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = TrustOnlyCa(
        loaded.tls.ca.clone(),
        provider.signature_verification_algorithms,
    );
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![von_keymgr::proto::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(
            quinn::ClientConfig::new(std::sync::Arc::new(quic)),
            keymgr,
            "keymgr.grid",
        )
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let join = von_keymgr::proto::ClientMsg::Join {
        underlay: von_config::UnderlayEndpoints::from_names([
            ("a", "192.0.2.99:4789".parse().unwrap()),
            ("b", "198.51.100.99:4789".parse().unwrap()),
        ])
        .unwrap(),
        have_epoch: None,
    };
    von_keymgr::wire::write_msg(&mut send, &join)
        .await
        .map_err(|e| e.to_string())?;
    match von_keymgr::wire::read_msg::<von_keymgr::proto::ServerMsg, _>(&mut recv).await {
        Ok(Some(m)) => Ok(format!("{m:?}")),
        Ok(None) => Err("stream closed".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Test-only server verifier: the key manager's certificate chains to `0`.
#[derive(Debug)]
struct TrustOnlyCa(
    rustls::pki_types::CertificateDer<'static>,
    rustls::crypto::WebPkiSupportedAlgorithms,
);

impl rustls::client::danger::ServerCertVerifier for TrustOnlyCa {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        von_crypto::cert::verify(
            &self.0,
            end_entity,
            &"grid".parse().unwrap(),
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.supported_schemes()
    }
}
