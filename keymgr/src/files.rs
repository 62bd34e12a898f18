//! Loading one end's certificate, TLS key and Noise key from the files the
//! operator named, and checking they belong together before anything binds.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use von_crypto::cert::{CertInfo, Role, VonName};
use von_crypto::wrap::NoiseSecret;

use crate::tls::TlsMaterial;

/// One end's keys, checked against its certificate.
#[derive(Debug)]
pub struct Loaded {
    /// For rustls.
    pub tls: TlsMaterial,
    /// For key wrapping (key manager) or unwrapping (member).
    pub noise: NoiseSecret,
    /// What the own certificate says.
    pub info: CertInfo,
}

/// A key or certificate file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {detail}")]
pub struct FileError {
    /// What the file is for.
    pub what: &'static str,
    /// Its path.
    pub path: String,
    /// What went wrong and how to fix it.
    pub detail: String,
}

/// Load and cross-check: the certificate chains to `ca` for `von`, has role
/// `role`, and carries the public half of the Noise key.
pub fn load(
    von: &VonName,
    role: Role,
    ca: &Path,
    cert: &Path,
    key: &Path,
    noise_key: &Path,
) -> Result<Loaded, FileError> {
    let ca_der = pem_cert(ca, "CA certificate")?;
    let cert_der = pem_cert(cert, "certificate")?;
    let err = |what: &'static str, path: &Path, detail: String| FileError {
        what,
        path: path.display().to_string(),
        detail,
    };
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        err(
            "TLS private key",
            key,
            format!("{e}; expected the PKCS#8 PEM from `von cert issue`"),
        )
    })?;
    let noise_text = std::fs::read_to_string(noise_key)
        .map_err(|e| err("Noise key", noise_key, e.to_string()))?;
    let noise = NoiseSecret::from_file_text(&noise_text)
        .map_err(|e| err("Noise key", noise_key, e.to_string()))?;
    let info = von_crypto::cert::verify(&ca_der, &cert_der, von, time::OffsetDateTime::now_utc())
        .map_err(|e| err("certificate", cert, e.to_string()))?;
    if info.extension.holder.role() != role {
        return Err(err(
            "certificate",
            cert,
            format!(
                "has role {}, this needs a {} certificate (von cert issue --role {})",
                info.extension.holder.role().as_str(),
                role.as_str(),
                role.as_str()
            ),
        ));
    }
    let carried = info.extension.holder.identity().map(|i| i.noise_public);
    if carried != Some(noise.public()) {
        return Err(err(
            "Noise key",
            noise_key,
            format!(
                "its public half is not the one {} carries; use the .noise.key issued with it",
                cert.display()
            ),
        ));
    }
    Ok(Loaded {
        tls: TlsMaterial {
            ca: ca_der,
            cert: cert_der,
            key: key_der,
            von: von.clone(),
        },
        noise,
        info,
    })
}

fn pem_cert(path: &Path, what: &'static str) -> Result<CertificateDer<'static>, FileError> {
    let err = |detail: String| FileError {
        what,
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let der = von_crypto::cert::pem_to_der(&text, what).map_err(|e| err(e.to_string()))?;
    Ok(CertificateDer::from(der))
}

/// Loads an end that has only TLS keys (a router, a reservation service):
/// the CA certificate, own certificate and key. The VON is the CA's; the
/// certificate must chain to it now and have `role`.
pub fn load_tls(
    role: Role,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(TlsMaterial, CertInfo), FileError> {
    let ca_der = pem_cert(ca, "CA certificate")?;
    let cert_der = pem_cert(cert, "certificate")?;
    let err = |what: &'static str, path: &Path, detail: String| FileError {
        what,
        path: path.display().to_string(),
        detail,
    };
    let von = von_crypto::cert::inspect(&ca_der)
        .map_err(|e| err("CA certificate", ca, e.to_string()))?
        .extension
        .von;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        err(
            "TLS private key",
            key,
            format!("{e}; expected the PKCS#8 PEM from `von cert issue`"),
        )
    })?;
    let info = von_crypto::cert::verify(&ca_der, &cert_der, &von, time::OffsetDateTime::now_utc())
        .map_err(|e| err("certificate", cert, e.to_string()))?;
    if info.extension.holder.role() != role {
        return Err(err(
            "certificate",
            cert,
            format!(
                "has role {}, this needs a {} certificate (von cert issue --role {})",
                info.extension.holder.role().as_str(),
                role.as_str(),
                role.as_str()
            ),
        ));
    }
    Ok((
        TlsMaterial {
            ca: ca_der,
            cert: cert_der,
            key: key_der,
            von,
        },
        info,
    ))
}
