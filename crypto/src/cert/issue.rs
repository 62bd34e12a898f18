//! Making certificates: the VON's CA and what it issues.
//!
//! Every certificate gets a random 127-bit serial. Members and the key manager
//! get a DNS name `NAME.VON` so that QUIC clients can name the server they
//! expect, both TLS usages (server and client), and a member id the CA picks
//! ([`random_member_id`]): it is written into the certificate, so it is stable
//! per certificate and nobody has to keep a table to learn it.

use rand::{Rng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::frame::{MemberId, OnId};
use crate::wrap::NoiseSecret;

use super::verify::{self, CertInfo};
use super::{
    CertError, Holder, Identity, MemberName, Role, VON_EXTENSION_OID, VonAddr, VonExtension,
    VonName,
};

/// How long a new CA is valid: ten years; members are re-issued far more often.
pub const CA_VALIDITY_DAYS: u32 = 3650;

/// A VON's certificate authority: its certificate and signing key.
#[derive(Debug)]
pub struct Ca {
    cert_pem: String,
    info: CertInfo,
    key: KeyPair,
}

/// What to put into a member's (or the key manager's) certificate.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// Any role but [`Role::Ca`].
    pub role: Role,
    /// Name, unique in the VON.
    pub name: MemberName,
    /// Sender id for frames; see [`random_member_id`].
    pub member_id: MemberId,
    /// VON address and prefix.
    pub addr: VonAddr,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; must not outlive the CA.
    pub not_after: OffsetDateTime,
}

/// A freshly issued certificate with both of its private keys.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The TLS private key (ECDSA P-256), PKCS#8 PEM.
    pub tls_key_pem: Zeroizing<String>,
    /// The X25519 secret whose public half the certificate carries.
    pub noise_secret: NoiseSecret,
}

impl Ca {
    /// A new CA for `von`, valid from `now` for `valid_days`.
    pub fn create(
        von: VonName,
        on_id: OnId,
        now: OffsetDateTime,
        valid_days: u32,
    ) -> Result<Self, CertError> {
        let ext = VonExtension {
            von,
            on_id,
            holder: Holder::Ca,
        };
        let mut params = base_params(&ext, now, now + Duration::days(valid_days.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("von CA {}", ext.von));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.self_signed(&key).map_err(generate)?;
        let info = verify::inspect(cert.der())?;
        Ok(Self {
            cert_pem: cert.pem(),
            info,
            key,
        })
    }

    /// Loads `ca.crt` and `ca.key`, checking that they belong together and
    /// that the certificate is a von CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let info = verify::inspect(&verify::pem_to_der(cert_pem, "CA certificate")?)?;
        if info.extension.holder.role() != Role::Ca || !info.is_ca {
            return Err(CertError::WrongRole {
                subject: info.subject,
                expected: Role::Ca.as_str(),
                found: info.extension.holder.role().as_str(),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Parse {
            what: "CA private key",
            reason: e.to_string(),
        })?;
        if key.subject_public_key_info() != info.public_key_der {
            return Err(CertError::KeyMismatch {
                subject: info.subject,
            });
        }
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            info,
            key,
        })
    }

    /// The CA certificate, PEM (`ca.crt`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM (`ca.key`).
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    /// What the CA certificate says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Issues a certificate with fresh TLS and X25519 keys.
    pub fn issue(&self, req: &IssueRequest) -> Result<Issued, CertError> {
        if req.not_before >= req.not_after
            || req.not_before < self.info.not_before
            || req.not_after > self.info.not_after
        {
            return Err(CertError::BadValidity {
                not_before: req.not_before,
                not_after: req.not_after,
                ca_not_before: self.info.not_before,
                ca_not_after: self.info.not_after,
            });
        }
        let noise_secret = NoiseSecret::generate();
        let identity = Identity {
            name: req.name.clone(),
            member_id: req.member_id,
            addr: req.addr,
            noise_public: noise_secret.public(),
        };
        let holder = match req.role {
            Role::Member => Holder::Member(identity),
            Role::Keymgr => Holder::Keymgr(identity),
            Role::Router => Holder::Router(identity),
            Role::Reserve => Holder::Reserve(identity),
            Role::Ca => {
                return Err(CertError::WrongRole {
                    subject: req.name.to_string(),
                    expected: "member or keymgr",
                    found: Role::Ca.as_str(),
                });
            }
        };
        let ext = VonExtension {
            von: self.info.extension.von.clone(),
            on_id: self.info.extension.on_id,
            holder,
        };
        let mut params = base_params(&ext, req.not_before, req.not_after);
        params
            .distinguished_name
            .push(DnType::CommonName, req.name.as_str());
        params.subject_alt_names = vec![rcgen::SanType::DnsName(
            format!("{}.{}", req.name, ext.von)
                .try_into()
                .map_err(generate)?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer =
            Issuer::from_ca_cert_der(&self.info.der.clone().into(), &self.key).map_err(generate)?;
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            tls_key_pem: Zeroizing::new(key.serialize_pem()),
            noise_secret,
        })
    }
}

/// A random non-zero member id that `taken` does not claim, so ids stay
/// unique in a VON as far as the issuer knows.
pub fn random_member_id(taken: impl Fn(MemberId) -> bool) -> MemberId {
    let mut rng = rand::rng();
    loop {
        let id = MemberId(rng.random_range(1..=u32::MAX));
        if !taken(id) {
            return id;
        }
    }
}

fn base_params(
    ext: &VonExtension,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, format!("von {}", ext.von));
    params.distinguished_name = dn;
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &VON_EXTENSION_OID,
        ext.to_der(),
    )];
    params
}

/// 16 random bytes with the top bit clear: a positive 127-bit integer,
/// within RFC 5280's 20-byte limit.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn generate(e: impl std::fmt::Display) -> CertError {
    CertError::Generate {
        reason: e.to_string(),
    }
}
