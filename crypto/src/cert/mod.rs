//! Certificates: a per-VON CA and the member and key-manager certificates it
//! issues, each a normal TLS certificate (ECDSA P-256) with the von extension
//! ([`ext`]) beside it, so one file serves both QUIC mutual TLS and the VON's
//! own checks.
//!
//! Flow:
//! 1. `von ca init`: [`Ca::create`] makes the CA key and self-signed certificate.
//! 2. `von cert issue`: [`Ca::issue`] makes a TLS key pair, an X25519 key and
//!    a certificate naming member, member id, VON address and X25519 key.
//! 3. Whoever meets a certificate calls [`verify`] with the CA, the VON it
//!    expects and the time (this crate never reads the clock).

mod ext;
mod issue;
mod names;
mod verify;

pub use ext::{
    EXTENSION_VERSION, EXTENSION_VERSION_V1, Holder, Identity, Role, VON_EXTENSION_OID,
    VON_EXTENSION_OID_TEXT, VonExtension,
};
pub use issue::{CA_VALIDITY_DAYS, Ca, IssueRequest, Issued, random_member_id};
pub use names::{
    ALLOWED_RANGES, MAX_PREFIX_LEN, MEMBER_NAME_MAX, MemberName, VON_NAME_MAX, VonAddr, VonName,
    VonPrefix,
};
pub use verify::{CertInfo, inspect, pem_to_der, verify};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a certificate could not be made, read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// A VON or member name breaks the naming rule.
    #[error("bad {kind} {name:?}: {reason}")]
    BadName {
        /// "VON name" or "member name".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A VON address is unusable.
    #[error("bad VON address {addr:?}: {reason}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The von extension's DER does not decode.
    #[error("malformed von extension ({VON_EXTENSION_OID_TEXT}): {reason}")]
    ExtensionMalformed {
        /// What the decoder found.
        reason: String,
    },
    /// The von extension has a version this code does not know.
    #[error(
        "von extension version {found} is not supported (this von reads version {supported}); upgrade von"
    )]
    ExtensionVersion {
        /// Version in the certificate.
        found: u8,
        /// Version this code reads.
        supported: u8,
    },
    /// The certificate has no von extension.
    #[error(
        "certificate {subject:?} has no von extension ({VON_EXTENSION_OID_TEXT}); issue it with `von ca init` or `von cert issue`"
    )]
    ExtensionMissing {
        /// The certificate's subject.
        subject: String,
    },
    /// The von extension is marked critical, which TLS stacks refuse.
    #[error(
        "certificate {subject:?} marks the von extension critical; TLS peers would refuse it, re-issue it"
    )]
    ExtensionCritical {
        /// The certificate's subject.
        subject: String,
    },
    /// A PEM or DER input does not parse.
    #[error("cannot read {what}: {reason}")]
    Parse {
        /// What was being read.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// Key generation or signing failed inside rcgen.
    #[error("cannot generate or sign a certificate: {reason}")]
    Generate {
        /// What rcgen said.
        reason: String,
    },
    /// The CA key file does not belong to the CA certificate.
    #[error(
        "the CA key does not match the CA certificate {subject:?}; use the ca.key written together with this ca.crt"
    )]
    KeyMismatch {
        /// The CA certificate's subject.
        subject: String,
    },
    /// A certificate has the wrong role for where it is used.
    #[error("certificate {subject:?} has role {found}, expected {expected}")]
    WrongRole {
        /// The certificate's subject.
        subject: String,
        /// The role needed here.
        expected: &'static str,
        /// The role it has.
        found: &'static str,
    },
    /// A certificate is past its validity.
    #[error("certificate {subject:?} expired at {} (now {}); issue a new one", rfc3339(.not_after), rfc3339(.now))]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// End of validity.
        not_after: OffsetDateTime,
        /// The time verification was asked about.
        now: OffsetDateTime,
    },
    /// A certificate is not valid yet.
    #[error("certificate {subject:?} is not valid before {} (now {}); check the clocks", rfc3339(.not_before), rfc3339(.now))]
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// The time verification was asked about.
        now: OffsetDateTime,
    },
    /// A validity period asked for at issue time is empty or outlives the CA.
    #[error("validity {} .. {} is not inside the CA's {} .. {}; ask for fewer days or renew the CA", rfc3339(.not_before), rfc3339(.not_after), rfc3339(.ca_not_before), rfc3339(.ca_not_after))]
    BadValidity {
        /// Requested start.
        not_before: OffsetDateTime,
        /// Requested end.
        not_after: OffsetDateTime,
        /// The CA's start.
        ca_not_before: OffsetDateTime,
        /// The CA's end.
        ca_not_after: OffsetDateTime,
    },
    /// The certificate was issued by someone else than this CA.
    #[error("certificate {subject:?} was issued by {issuer:?}, not by this VON's CA {ca:?}")]
    IssuerMismatch {
        /// The certificate's subject.
        subject: String,
        /// Its issuer.
        issuer: String,
        /// The CA's subject.
        ca: String,
    },
    /// The CA's signature on the certificate does not verify.
    #[error("certificate {subject:?} does not carry a valid signature of CA {ca:?}: {reason}")]
    BadSignature {
        /// The certificate's subject.
        subject: String,
        /// The CA's subject.
        ca: String,
        /// What the verifier said.
        reason: String,
    },
    /// The certificate belongs to another VON.
    #[error("certificate {subject:?} is for VON {found}, expected {expected}")]
    VonMismatch {
        /// The certificate's subject.
        subject: String,
        /// The VON expected, as `name (ON id N)` when the ON id is known.
        expected: String,
        /// The VON in the certificate, as `name (ON id N)`.
        found: String,
    },
}

/// RFC 3339 text of an instant, for error messages and `von cert show`.
pub fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
