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
use von_crypto::cert::{CertInfo, Holder, Role, VonName};

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
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(m.ca.clone())
        .map_err(|e| TlsError::Anchor(e.to_string()))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = MemberVerifier {
        inner,
        ca: m.ca,
        von: m.von,
        revoked,
        logged: Mutex::new(HashSet::new()),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![m.cert], m.key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No session resumption: a resumed session skips the client verifier, so
    // a member revoked (or expired) since its last handshake would get past
    // it. Every reconnect is a full handshake; members reconnect rarely.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// A member's rustls config: TLS 1.3, its own certificate, and only this
/// VON's key manager trusted.
pub fn client_config(m: TlsMaterial) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = KeymgrVerifier {
        algorithms: provider.signature_verification_algorithms,
        ca: m.ca,
        von: m.von,
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![m.cert], m.key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
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

/// Checks member certificates: WebPKI first, then von's rules.
pub struct MemberVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    ca: CertificateDer<'static>,
    von: VonName,
    revoked: Revocations,
    logged: Mutex<HashSet<(String, String)>>,
}

impl fmt::Debug for MemberVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberVerifier")
            .field("von", &self.von)
            .finish_non_exhaustive()
    }
}

impl MemberVerifier {
    fn von_checks(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
    ) -> Result<CertInfo, rustls::Error> {
        let info = von_crypto::cert::verify(&self.ca, end_entity, &self.von, to_time(now))
            .map_err(|e| self.refuse(end_entity, e.to_string()))?;
        match &info.extension.holder {
            Holder::Member(id) if self.revoked.contains(id.name.as_str()) => {
                let name = id.name.as_str();
                self.revoked.count_attempt(name);
                self.log_once(end_entity, &format!("member {name:?} is revoked"));
                // The standard alert, so the member knows it is revoked
                // rather than merely unwelcome (see client.rs).
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            Holder::Member(_) => Ok(info),
            other => Err(self.refuse(
                end_entity,
                format!(
                    "certificate role is {}, a member certificate is required",
                    other.role().as_str()
                ),
            )),
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
            warn!(%subject, %reason, "member certificate refused");
        }
    }
}

impl ClientCertVerifier for MemberVerifier {
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

/// Checks the key manager's certificate: issued by this VON's CA (signature
/// and validity, by `von_crypto::cert::verify`), this VON, role `keymgr`.
#[derive(Debug)]
pub struct KeymgrVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    ca: CertificateDer<'static>,
    von: VonName,
}

impl ServerCertVerifier for KeymgrVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let info = von_crypto::cert::verify(&self.ca, end_entity, &self.von, to_time(now))
            .map_err(|e| {
                warn!(error = %e, "key manager certificate refused");
                refused(e.to_string())
            })?;
        if info.extension.holder.role() != Role::Keymgr {
            let reason = format!(
                "the server's certificate ({}) has role {}, not keymgr",
                info.subject,
                info.extension.holder.role().as_str()
            );
            warn!(%reason, "key manager certificate refused");
            return Err(refused(reason));
        }
        Ok(ServerCertVerified::assertion())
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
