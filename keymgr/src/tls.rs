//! Mutual TLS for the control plane: both ends present certificates from the
//! VON's CA, and each applies von's own checks on top of WebPKI's.
//!
//! Server side, [`MemberVerifier`] runs `WebPkiClientVerifier` (chain to the
//! VON's CA, validity, signatures) and then: the von extension names this
//! VON (name and ON id), the role is `member`, the name is not revoked. Every
//! refusal is logged once per (subject, reason), so a member retrying every
//! second does not flood the log.
//!
//! Client side, [`KeymgrVerifier`] accepts only a certificate of this VON's CA
//! whose role is `keymgr`; the role check replaces a host name check, since a
//! member knows its key manager by address, not by name.
//!
//! Both are instances of one rule, [`PeerPolicy`] (role, optional name,
//! revocation), which router control (crate von-router) uses too: a router
//! accepts only `reserve` certificates, a reservation service only the
//! `router` certificate of the router it dials.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use time::OffsetDateTime;
use tracing::warn;
use von_crypto::cert::{CertInfo, Role, VonName};

use crate::proto::ALPN;

/// Revoked member names, shared between the key manager and its verifier so
/// a revocation refuses the next handshake at once; and how many handshakes
/// each revoked name attempted since, which `von keymgr status` shows (a
/// revoked member backs off, so this grows slowly).
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    names: Arc<RwLock<BTreeSet<String>>>,
    attempts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Revocations {
    /// A set starting with `names`.
    pub fn new(names: BTreeSet<String>) -> Self {
        Self {
            names: Arc::new(RwLock::new(names)),
            attempts: Arc::default(),
        }
    }

    /// Add `name`.
    pub fn insert(&self, name: &str) {
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }

    /// True if `name` is revoked.
    pub fn contains(&self, name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Handshakes refused per revoked name.
    pub fn attempts(&self) -> BTreeMap<String, u64> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count_attempt(&self, name: &str) {
        let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        // Names are revoked by the operator, so the map stays small.
        *a.entry(name.to_owned()).or_default() += 1;
    }
}

/// The TLS material of one end: the VON's CA, own chain and key.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The VON's CA certificate (DER).
    pub ca: CertificateDer<'static>,
    /// Own certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Own TLS private key.
    pub key: PrivateKeyDer<'static>,
    /// The VON these certificates belong to.
    pub von: VonName,
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificate could not be used as a trust anchor.
    #[error(
        "the CA certificate cannot be a trust anchor: {0}; check the `ca` file is the VON's ca.crt"
    )]
    Anchor(String),
    /// The client verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(String),
}

/// The key manager's rustls config: TLS 1.3, mandatory member certificates.
pub fn server_config(
    m: TlsMaterial,
    revoked: Revocations,
) -> Result<rustls::ServerConfig, TlsError> {
    let policy = PeerPolicy {
        revoked: Arc::new(revoked),
        ..PeerPolicy::role(Role::Member)
    };
    server_config_for(m, policy, ALPN)
}

/// A member's rustls config: TLS 1.3, its own certificate, and only this
/// VON's key manager trusted.
pub fn client_config(m: TlsMaterial) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = client_config_for(m, PeerPolicy::role(Role::Keymgr), ALPN)?;
    // Members had resumption before the policy was shared; QUIC 0-RTT is
    // not used, and a resumed session is still bound to the key manager's
    // certificate checked the first time.
    cfg.resumption = rustls::client::Resumption::default();
    Ok(cfg)
}

/// The server name a member uses for its key manager. It is not checked
/// against the certificate (the role is, see [`KeymgrVerifier`]); it only
/// fills the SNI field.
pub fn keymgr_server_name(von: &VonName) -> ServerName<'static> {
    // "keymgr.<von>" is a valid DNS name for every valid VON name.
    ServerName::try_from(format!("keymgr.{von}")).expect("VON names are DNS labels")
}

/// A refusal's reason with its numbers (verification times, ports) left
/// out, so the same refusal retried a second later counts as logged.
pub(crate) fn once_key(reason: &str) -> String {
    reason.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn to_time(now: UnixTime) -> OffsetDateTime {
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn refused(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Refusal(reason),
    ))))
}

#[derive(Debug)]
struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Whether a certificate is revoked; the key manager's [`Revocations`]
/// (by member name) and the routers' revocation list (by serial) are two.
pub trait RevocationCheck: Send + Sync + fmt::Debug {
    /// True if `info` is revoked; may count the attempt.
    fn is_revoked(&self, info: &CertInfo) -> bool;
}

impl RevocationCheck for Revocations {
    fn is_revoked(&self, info: &CertInfo) -> bool {
        let Some(id) = info.extension.holder.identity() else {
            return false;
        };
        let revoked = self.contains(id.name.as_str());
        if revoked {
            self.count_attempt(id.name.as_str());
        }
        revoked
    }
}

/// Nothing is revoked (the key manager's own certificate, as members see it).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocations;

impl RevocationCheck for NoRevocations {
    fn is_revoked(&self, _: &CertInfo) -> bool {
        false
    }
}

/// Whom one end of a mutual-TLS connection accepts as its peer, beyond
/// "issued by the CA for this VON": the role, optionally the exact name,
/// and not revoked.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// The role the peer's certificate must have.
    pub role: Role,
    /// The name it must have; `None`: any name.
    pub name: Option<String>,
    /// Revoked certificates are refused with the standard `revoked` alert.
    pub revoked: Arc<dyn RevocationCheck>,
}

impl PeerPolicy {
    /// Any certificate of `role`, none revoked.
    pub fn role(role: Role) -> Self {
        Self {
            role,
            name: None,
            revoked: Arc::new(NoRevocations),
        }
    }

    /// von's checks of `end_entity`, after (or instead of) WebPKI's:
    /// CA, VON, validity, role, name, revocation.
    fn check(
        &self,
        ca: &CertificateDer<'_>,
        von: &VonName,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<CertInfo, PeerRefusal> {
        let info = von_crypto::cert::verify(ca, end_entity, von, to_time(now))
            .map_err(|e| PeerRefusal::Other(e.to_string()))?;
        let role = info.extension.holder.role();
        let name = info
            .extension
            .holder
            .identity()
            .map(|id| id.name.as_str().to_owned())
            .unwrap_or_default();
        if role != self.role {
            return Err(PeerRefusal::Other(format!(
                "certificate {name:?} has role {}, a {} certificate is required",
                role.as_str(),
                self.role.as_str()
            )));
        }
        if let Some(want) = &self.name {
            if &name != want {
                return Err(PeerRefusal::Other(format!(
                    "certificate is for {} {name:?}, expected {want:?}",
                    role.as_str()
                )));
            }
        }
        if self.revoked.is_revoked(&info) {
            return Err(PeerRefusal::Revoked(format!(
                "{} {name:?} is revoked (serial {})",
                role.as_str(),
                info.serial
            )));
        }
        Ok(info)
    }
}

/// Why [`PeerPolicy::check`] refused.
enum PeerRefusal {
    Revoked(String),
    Other(String),
}

/// A server's rustls config: TLS 1.3, a mandatory client certificate that
/// `policy` accepts, `alpn`, no session resumption.
pub fn server_config_for(
    m: TlsMaterial,
    policy: PeerPolicy,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(m.ca.clone())
        .map_err(|e| TlsError::Anchor(e.to_string()))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = PeerVerifier {
        inner,
        ca: m.ca,
        von: m.von,
        policy,
        logged: Mutex::new(HashSet::new()),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![m.cert], m.key)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    // No session resumption: a resumed session skips the client verifier, so
    // a peer revoked (or expired) since its last handshake would get past
    // it. Every reconnect is a full handshake.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// A client's rustls config: TLS 1.3, its own certificate, and only a
/// server certificate that `policy` accepts; `alpn`; no resumption.
pub fn client_config_for(
    m: TlsMaterial,
    policy: PeerPolicy,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = ServerVerifier {
        algorithms: provider.signature_verification_algorithms,
        ca: m.ca,
        von: m.von,
        policy,
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![m.cert], m.key)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    // A resumed session would skip the server verifier (and a revocation).
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}

/// Checks client certificates: WebPKI first, then von's rules
/// ([`PeerPolicy`]). Every refusal is logged once per (subject, reason).
pub struct PeerVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ca: CertificateDer<'static>,
    von: VonName,
    policy: PeerPolicy,
    logged: Mutex<HashSet<(String, String)>>,
}

/// The key manager's verifier of member certificates.
pub type MemberVerifier = PeerVerifier;

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("von", &self.von)
            .field("role", &self.policy.role)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    fn von_checks(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<CertInfo, rustls::Error> {
        match self.policy.check(&self.ca, &self.von, end_entity, now) {
            Ok(info) => Ok(info),
            Err(PeerRefusal::Revoked(reason)) => {
                self.log_once(end_entity, &reason);
                // The standard alert, so the peer knows it is revoked
                // rather than merely unwelcome (see client.rs).
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            Err(PeerRefusal::Other(reason)) => Err(self.refuse(end_entity, reason)),
        }
    }

    fn refuse(&self, end_entity: &CertificateDer<'_>, reason: String) -> rustls::Error {
        self.log_once(end_entity, &reason);
        refused(reason)
    }

    /// Log a refusal the first time this subject is refused for this reason.
    fn log_once(&self, end_entity: &CertificateDer<'_>, reason: &str) {
        let subject = von_crypto::cert::inspect(end_entity)
            .map(|i| i.subject)
            .unwrap_or_else(|_| "<unreadable certificate>".to_owned());
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() > 4096 {
            logged.clear();
        }
        if logged.insert((subject.clone(), once_key(reason))) {
            let role = self.policy.role.as_str();
            warn!(%subject, %reason, "{role} certificate refused");
        }
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            self.log_once(end_entity, &e.to_string());
            return Err(e);
        }
        self.von_checks(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks a server's certificate: issued by this VON's CA (signature and
/// validity, by `von_crypto::cert::verify`), this VON, and [`PeerPolicy`];
/// the role (and name) check replaces a host name check, since a client
/// knows its server by address.
#[derive(Debug)]
pub struct ServerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    ca: CertificateDer<'static>,
    von: VonName,
    policy: PeerPolicy,
}

/// A member's verifier of its key manager's certificate.
pub type KeymgrVerifier = ServerVerifier;

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let role = self.policy.role.as_str();
        match self.policy.check(&self.ca, &self.von, end_entity, now) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(PeerRefusal::Revoked(reason)) => {
                warn!(%reason, "{role} certificate refused");
                Err(refused(reason))
            }
            Err(PeerRefusal::Other(reason)) => {
                warn!(%reason, "{role} certificate refused");
                Err(refused(reason))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
