//! The von certificate extension: whom a certificate speaks for inside a VON.
//!
//! It rides next to a normal TLS key pair, so the same certificate serves QUIC
//! mutual TLS; it is never marked critical, because rustls and webpki refuse
//! certificates with unknown critical extensions.
//!
//! ```text
//! VonExtension ::= SEQUENCE {
//!   version      INTEGER (1 | 2),             -- a reader refuses versions it does not know
//!   role         ENUMERATED { ca(0), member(1), keymgr(2),
//!                             router(3), reserve(4) },  -- 3 and 4 only in version 2
//!   von          UTF8String,                  -- the VON name
//!   onId         INTEGER (0..4294967295),
//!   -- the five fields below are present unless role = ca
//!   name         UTF8String,                  -- member (or key manager) name
//!   memberId     INTEGER (1..4294967295),     -- the frame's sender id
//!   address      OCTET STRING (SIZE (4)),     -- the member's IPv4 VON address
//!   prefixLength INTEGER (0..32),             -- the VON prefix
//!   noiseKey     OCTET STRING (SIZE (32))     -- X25519 public key for key wrapping
//! }
//! ```
//!
//! Version 2 adds the roles `router` and `reserve` (router control, see
//! docs/isolation.md) and nothing else; the fields are those of version 1.
//! Certificates of the first three roles are still written as version 1, so
//! a von that reads only version 1 keeps reading them, and refuses a router
//! certificate with "upgrade von" rather than with an unknown role.

use std::net::Ipv4Addr;

use crate::frame::{MemberId, OnId};
use crate::wrap::NoisePublic;

use super::{CertError, MemberName, VonAddr, VonName};

/// The extension's OID, under the ITU-T X.667 UUID arc 2.25 (no registration).
///
/// The arc after 2.25 is the UUID `00000000-0000-0000-f0cb-81ea29d2660d`
/// read as an integer: 64 random bits. A random version-4 UUID would not fit,
/// because rcgen takes OID arcs as `u64`; every version-4 UUID is at least
/// 2^76, so no RFC 4122 UUID can collide with this one.
pub const VON_EXTENSION_OID: [u64; 3] = [2, 25, 17_350_904_498_644_855_053];
/// [`VON_EXTENSION_OID`] in dotted text, as `openssl x509 -text` prints it.
pub const VON_EXTENSION_OID_TEXT: &str = "2.25.17350904498644855053";
/// The newest extension version this code writes and reads (it reads 1 too).
pub const EXTENSION_VERSION: u8 = 2;
/// The version written for roles version 1 knows (ca, member, keymgr).
pub const EXTENSION_VERSION_V1: u8 = 1;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The VON's certificate authority.
    Ca,
    /// A member host.
    Member,
    /// The key manager: its X25519 key authenticates wrapped group keys.
    Keymgr,
    /// A router that shapes ONs (`von router`); only its name is read.
    Router,
    /// A reservation service replica (`von reserve serve`) that configures
    /// routers; only its name is read.
    Reserve,
}

/// A member's or the key manager's identity in the VON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its name, unique in the VON.
    pub name: MemberName,
    /// The sender id its frames carry; picked at random by the CA when issuing.
    pub member_id: MemberId,
    /// Its VON address and the VON prefix.
    pub addr: VonAddr,
    /// Its X25519 public key; group keys are wrapped to it (or, for the key
    /// manager, authenticated by it).
    pub noise_public: NoisePublic,
}

/// The decoded extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonExtension {
    /// The VON's name.
    pub von: VonName,
    /// The VON's ON id, first four bytes of every frame.
    pub on_id: OnId,
    /// The role, and for members and the key manager their identity.
    pub holder: Holder,
}

/// Who holds the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The VON's CA; it carries no member fields.
    Ca,
    /// A member host.
    Member(Identity),
    /// The key manager.
    Keymgr(Identity),
    /// A router (extension version 2).
    Router(Identity),
    /// A reservation service replica (extension version 2).
    Reserve(Identity),
}

impl Role {
    /// The text form, as `von cert issue --role` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ca => "ca",
            Role::Member => "member",
            Role::Keymgr => "keymgr",
            Role::Router => "router",
            Role::Reserve => "reserve",
        }
    }

    fn code(self) -> i64 {
        match self {
            Role::Ca => 0,
            Role::Member => 1,
            Role::Keymgr => 2,
            Role::Router => 3,
            Role::Reserve => 4,
        }
    }

    /// The extension version a certificate of this role is written in.
    fn version(self) -> u8 {
        match self {
            Role::Router | Role::Reserve => EXTENSION_VERSION,
            _ => EXTENSION_VERSION_V1,
        }
    }
}

impl Holder {
    /// The role alone.
    pub fn role(&self) -> Role {
        match self {
            Holder::Ca => Role::Ca,
            Holder::Member(_) => Role::Member,
            Holder::Keymgr(_) => Role::Keymgr,
            Holder::Router(_) => Role::Router,
            Holder::Reserve(_) => Role::Reserve,
        }
    }

    /// The identity of a member or key manager; `None` for the CA.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Holder::Ca => None,
            Holder::Member(id) | Holder::Keymgr(id) | Holder::Router(id) | Holder::Reserve(id) => {
                Some(id)
            }
        }
    }
}

impl VonExtension {
    /// DER encoding of the extension value.
    pub fn to_der(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u8(self.holder.role().version());
                w.next().write_enum(self.holder.role().code());
                w.next().write_utf8_string(self.von.as_str());
                w.next().write_u32(self.on_id.0);
                if let Some(id) = self.holder.identity() {
                    w.next().write_utf8_string(id.name.as_str());
                    w.next().write_u32(id.member_id.0);
                    w.next().write_bytes(&id.addr.addr().octets());
                    w.next().write_u8(id.addr.prefix_len());
                    w.next().write_bytes(id.noise_public.as_bytes());
                }
            })
        })
    }

    /// Decodes and checks the extension value: every field is re-validated,
    /// so a certificate from a careless issuer cannot smuggle in a bad name.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let raw = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                let version = r.next().read_u8()?;
                if version != EXTENSION_VERSION_V1 && version != EXTENSION_VERSION {
                    // Skip the fields of a version this code cannot read.
                    while r.read_optional(|r| r.read_der())?.is_some() {}
                    return Ok(Raw::Version(version));
                }
                let role = r.next().read_enum()?;
                let von = r.next().read_utf8string()?;
                let on_id = r.next().read_u32()?;
                let member = if role == Role::Ca.code() {
                    None
                } else {
                    Some(RawIdentity {
                        name: r.next().read_utf8string()?,
                        member_id: r.next().read_u32()?,
                        addr: r.next().read_bytes()?,
                        prefix_len: r.next().read_u8()?,
                        key: r.next().read_bytes()?,
                    })
                };
                Ok(Raw::V1 {
                    version,
                    role,
                    von,
                    on_id,
                    member,
                })
            })
        })
        .map_err(|e| CertError::ExtensionMalformed {
            reason: e.to_string(),
        })?;
        let (role, von, on_id, member) = match raw {
            Raw::Version(found) => {
                return Err(CertError::ExtensionVersion {
                    found,
                    supported: EXTENSION_VERSION,
                });
            }
            Raw::V1 {
                version,
                role,
                von,
                on_id,
                member,
            } => ((version, role), von, on_id, member),
        };
        let malformed = |reason: String| CertError::ExtensionMalformed { reason };
        let (version, role) = role;
        if version == EXTENSION_VERSION_V1 && role > Role::Keymgr.code() {
            return Err(malformed(format!(
                "role {role} is not one of version 1 (router and reserve need version 2)"
            )));
        }
        let von: VonName = von.parse()?;
        let holder = match (role, member) {
            (0, None) => Holder::Ca,
            (1..=4, Some(raw)) => {
                let RawIdentity {
                    name,
                    member_id,
                    addr,
                    prefix_len,
                    key,
                } = raw;
                let addr: [u8; 4] = addr.as_slice().try_into().map_err(|_| {
                    malformed(format!("address is {} bytes, expected 4", addr.len()))
                })?;
                let key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
                    malformed(format!("noise key is {} bytes, expected 32", key.len()))
                })?;
                if member_id == 0 {
                    return Err(malformed("member id 0 is reserved".to_owned()));
                }
                let id = Identity {
                    name: name.parse()?,
                    member_id: MemberId(member_id),
                    addr: VonAddr::new(Ipv4Addr::from(addr), prefix_len)?,
                    noise_public: NoisePublic::from_bytes(key),
                };
                match role {
                    1 => Holder::Member(id),
                    2 => Holder::Keymgr(id),
                    3 => Holder::Router(id),
                    _ => Holder::Reserve(id),
                }
            }
            (other, _) => return Err(malformed(format!("unknown role {other}"))),
        };
        Ok(Self {
            von,
            on_id: OnId(on_id),
            holder,
        })
    }
}

/// The parsed fields before validation.
enum Raw {
    Version(u8),
    V1 {
        version: u8,
        role: i64,
        von: String,
        on_id: u32,
        member: Option<RawIdentity>,
    },
}

struct RawIdentity {
    name: String,
    member_id: u32,
    addr: Vec<u8>,
    prefix_len: u8,
    key: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> VonExtension {
        VonExtension {
            von: "grid".parse().unwrap(),
            on_id: OnId(7),
            holder: Holder::Member(Identity {
                name: "h1".parse().unwrap(),
                member_id: MemberId(0xdead_beef),
                addr: "100.64.0.1/24".parse().unwrap(),
                noise_public: NoisePublic::from_bytes([9; 32]),
            }),
        }
    }

    #[test]
    fn router_roles_are_version_2_and_old_roles_stay_version_1() {
        let Holder::Member(id) = member().holder else {
            unreachable!()
        };
        for (holder, version) in [
            (Holder::Router(id.clone()), EXTENSION_VERSION),
            (Holder::Reserve(id.clone()), EXTENSION_VERSION),
            (Holder::Member(id.clone()), EXTENSION_VERSION_V1),
            (Holder::Keymgr(id), EXTENSION_VERSION_V1),
        ] {
            let ext = VonExtension { holder, ..member() };
            let der = ext.to_der();
            assert_eq!(der[4], version, "{:?}", ext.holder.role());
            assert_eq!(VonExtension::from_der(&der).unwrap(), ext);
        }
        // A router role claimed under version 1 is malformed, not a router.
        let mut der = VonExtension {
            holder: Holder::Router(match member().holder {
                Holder::Member(id) => id,
                _ => unreachable!(),
            }),
            ..member()
        }
        .to_der();
        der[4] = EXTENSION_VERSION_V1;
        let err = VonExtension::from_der(&der).unwrap_err().to_string();
        assert!(err.contains("router and reserve need version 2"), "{err}");
    }

    #[test]
    fn round_trips() {
        let ca = VonExtension {
            holder: Holder::Ca,
            ..member()
        };
        for ext in [member(), ca] {
            assert_eq!(VonExtension::from_der(&ext.to_der()).unwrap(), ext);
        }
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut der = member().to_der();
        // SEQUENCE header (2 bytes), then INTEGER 02 01 <version>.
        assert_eq!(&der[2..5], &[0x02, 0x01, EXTENSION_VERSION_V1]);
        der[4] = 3;
        assert_eq!(
            VonExtension::from_der(&der),
            Err(CertError::ExtensionVersion {
                found: 3,
                supported: 2
            })
        );
        let der = member().to_der();
        for cut in 0..der.len() {
            assert!(
                VonExtension::from_der(&der[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
    }
}
