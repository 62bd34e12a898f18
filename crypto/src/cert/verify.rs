//! Reading certificates back and deciding whether to trust them.
//!
//! [`inspect`] reads what a certificate says without trusting it (for
//! `von cert show` and for loading a CA); [`verify`] is the trust decision:
//!
//! 1. the CA certificate is a CA, carries the von extension with role `ca`,
//!    names the expected VON, and is valid now;
//! 2. the certificate was issued by that CA and its signature verifies;
//! 3. it is valid now;
//! 4. its von extension is a member or key manager of the CA's VON (name and
//!    ON id).

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{CertError, Role, VON_EXTENSION_OID, VonExtension, VonName};

/// What a certificate says, read without trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject, as `O=von grid, CN=h1`.
    pub subject: String,
    /// Issuer, in the same form.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basic constraints say CA.
    pub is_ca: bool,
    /// The TLS key's algorithm, e.g. `ECDSA P-256`.
    pub key_algorithm: String,
    /// The TLS public key, SubjectPublicKeyInfo DER.
    pub public_key_der: Vec<u8>,
    /// The von extension.
    pub extension: VonExtension,
    /// The whole certificate, DER.
    pub der: Vec<u8>,
}

/// The DER inside the first PEM block of `pem`.
pub fn pem_to_der(pem: &str, what: &'static str) -> Result<Vec<u8>, CertError> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertError::Parse {
            what,
            reason: format!("not PEM ({e}); expected a -----BEGIN CERTIFICATE----- block"),
        })?;
    if block.label != "CERTIFICATE" {
        return Err(CertError::Parse {
            what,
            reason: format!("PEM block is {:?}, expected \"CERTIFICATE\"", block.label),
        });
    }
    Ok(block.contents)
}

/// Reads a certificate and its von extension; no trust decision.
pub fn inspect(der: &[u8]) -> Result<CertInfo, CertError> {
    let cert = parse(der, "certificate")?;
    info(&cert, der)
}

/// Decides whether `cert_der` speaks for a member or the key manager of the
/// VON `von`, under the CA `ca_der`, at `now`.
pub fn verify(
    ca_der: &[u8],
    cert_der: &[u8],
    von: &VonName,
    now: OffsetDateTime,
) -> Result<CertInfo, CertError> {
    let ca_cert = parse(ca_der, "CA certificate")?;
    let ca = info(&ca_cert, ca_der)?;
    if ca.extension.holder.role() != Role::Ca || !ca.is_ca {
        return Err(CertError::WrongRole {
            subject: ca.subject,
            expected: Role::Ca.as_str(),
            found: ca.extension.holder.role().as_str(),
        });
    }
    if &ca.extension.von != von {
        return Err(CertError::VonMismatch {
            subject: ca.subject.clone(),
            expected: von.to_string(),
            found: von_text(&ca.extension),
        });
    }
    check_time(&ca, now)?;

    let cert = parse(cert_der, "certificate")?;
    let subject = cert.subject().to_string();
    if cert.issuer().as_raw() != ca_cert.subject().as_raw() {
        return Err(CertError::IssuerMismatch {
            subject,
            issuer: cert.issuer().to_string(),
            ca: ca.subject,
        });
    }
    cert.verify_signature(Some(ca_cert.public_key()))
        .map_err(|e| CertError::BadSignature {
            subject: subject.clone(),
            ca: ca.subject.clone(),
            reason: e.to_string(),
        })?;
    let leaf = info(&cert, cert_der)?;
    check_time(&leaf, now)?;
    if leaf.extension.holder.role() == Role::Ca || leaf.is_ca {
        return Err(CertError::WrongRole {
            subject,
            expected: "member or keymgr",
            found: Role::Ca.as_str(),
        });
    }
    if leaf.extension.von != ca.extension.von || leaf.extension.on_id != ca.extension.on_id {
        return Err(CertError::VonMismatch {
            subject,
            expected: von_text(&ca.extension),
            found: von_text(&leaf.extension),
        });
    }
    Ok(leaf)
}

fn von_text(ext: &VonExtension) -> String {
    format!("{} (ON id {})", ext.von, ext.on_id.0)
}

fn check_time(info: &CertInfo, now: OffsetDateTime) -> Result<(), CertError> {
    if now < info.not_before {
        return Err(CertError::NotYetValid {
            subject: info.subject.clone(),
            not_before: info.not_before,
            now,
        });
    }
    if now > info.not_after {
        return Err(CertError::Expired {
            subject: info.subject.clone(),
            not_after: info.not_after,
            now,
        });
    }
    Ok(())
}

fn parse<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::Parse {
            what,
            reason: format!("{} bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

fn info(cert: &X509Certificate<'_>, der: &[u8]) -> Result<CertInfo, CertError> {
    let subject = cert.subject().to_string();
    let oid = oid_der(&VON_EXTENSION_OID);
    let mut found = None;
    for ext in cert.extensions() {
        // Compared as DER: asn1-rs prints arcs above 63 bits in hex.
        if ext.oid.as_bytes() != oid.as_slice() {
            continue;
        }
        if found.is_some() {
            return Err(CertError::ExtensionMalformed {
                reason: format!("certificate {subject:?} carries the von extension twice"),
            });
        }
        if ext.critical {
            return Err(CertError::ExtensionCritical { subject });
        }
        found = Some(VonExtension::from_der(ext.value)?);
    }
    let extension = found.ok_or_else(|| CertError::ExtensionMissing {
        subject: subject.clone(),
    })?;
    Ok(CertInfo {
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
        key_algorithm: key_algorithm(cert),
        public_key_der: cert.public_key().raw.to_vec(),
        extension,
        der: der.to_vec(),
        subject,
    })
}

/// The DER content octets of an OID (X.690 8.19): the first two arcs as
/// one, then each arc in base 128, high bit marking continuation.
fn oid_der(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let first = u128::from(arcs[0]) * 40 + u128::from(arcs[1]);
    for arc in std::iter::once(first).chain(arcs[2..].iter().map(|&a| u128::from(a))) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    out
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    let alg = &cert.public_key().algorithm;
    let curve = alg
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match (alg.algorithm.to_id_string().as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".to_owned(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ECDSA P-384".to_owned(),
        ("1.3.101.112", _) => "Ed25519".to_owned(),
        ("1.2.840.113549.1.1.1", _) => "RSA".to_owned(),
        (other, _) => format!("OID {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_encoding() {
        // 2.5.29.17 (subjectAltName) and 2.999.3 from X.690's example.
        assert_eq!(oid_der(&[2, 5, 29, 17]), [0x55, 0x1d, 0x11]);
        assert_eq!(oid_der(&[2, 999, 3]), [0x88, 0x37, 0x03]);
        assert_eq!(
            oid_der(&VON_EXTENSION_OID),
            [
                0x69, 0x81, 0xf0, 0xe5, 0xb2, 0xf6, 0xe6, 0xab, 0xd0, 0xd2, 0x0d
            ]
        );
    }
}
