//! The CA's ledger, `ledger.json` next to `ca.key`: the VON prefix and every
//! certificate the CA issued. `von cert issue` checks each request against it
//! before signing — the address is a host of the prefix, and no other live
//! certificate has the name's id, or the address — and `von cert list`
//! prints it.
//!
//! It is written whole, to a temporary file that is fsync'ed and renamed, so a
//! crash leaves the old ledger or the new one, never half of one.
//!
//! A CA directory from before the ledger (only `issued.txt`, no prefix) is
//! refused with the command that upgrades it: `von ca upgrade`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use von_crypto::MemberId;
use von_crypto::cert::{CertInfo, VonAddr, VonPrefix, random_member_id, rfc3339};

/// The ledger's file name in the CA directory.
pub const LEDGER: &str = "ledger.json";
/// The member-id list of CA directories made before the ledger.
pub const OLD_LEDGER: &str = "issued.txt";
/// The ledger format this code writes and reads.
const VERSION: u32 = 1;

/// What the CA knows about its VON and what it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// [`VERSION`].
    pub version: u32,
    /// The VON's name.
    pub von: String,
    /// Its ON id.
    pub on_id: u32,
    /// The VON prefix every address must be a host of.
    pub prefix: String,
    /// One entry per name, the latest certificate issued for it.
    pub issued: Vec<Entry>,
    /// Certificates revoked with `von cert revoke`, by serial (absent in
    /// ledgers written before revocation existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<Revoked>,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Certificate serial, hex.
    pub serial: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// When it was revoked, RFC 3339.
    pub at: String,
}

/// The revocation list next to the ledger: `SERIAL NAME ROLE` lines that
/// routers and reservation services read (their `revoked` setting).
pub const REVOKED: &str = "revoked.txt";

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Member id (frame sender id), stable across renewals of the name.
    pub member_id: u32,
    /// Member name.
    pub name: String,
    /// `member`, `keymgr`, `router` or `reserve`.
    pub role: String,
    /// VON address.
    pub address: Ipv4Addr,
    /// Certificate serial, hex.
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
}

impl Ledger {
    /// A new ledger for a new CA.
    pub fn new(von: &str, on_id: u32, prefix: VonPrefix) -> Self {
        Self {
            version: VERSION,
            von: von.to_owned(),
            on_id,
            prefix: prefix.to_string(),
            issued: Vec::new(),
            revoked: Vec::new(),
        }
    }

    /// Revokes the certificate last issued for `name`; false if it already
    /// was. The caller saves the ledger and [`revocation_list`](Self::revocation_list).
    pub fn revoke(&mut self, name: &str, now: OffsetDateTime) -> anyhow::Result<bool> {
        let Some(e) = self.issued.iter().find(|e| e.name == name) else {
            bail!(
                "{name:?} is not in this CA's ledger; `von cert list --ca DIR` shows what it issued"
            );
        };
        if self.revoked.iter().any(|r| r.serial == e.serial) {
            return Ok(false);
        }
        self.revoked.push(Revoked {
            serial: e.serial.clone(),
            name: e.name.clone(),
            role: e.role.clone(),
            at: rfc3339(&now),
        });
        Ok(true)
    }

    /// The text of `revoked.txt`.
    pub fn revocation_list(&self) -> String {
        let mut out = format!(
            "# von revocation list of VON {} (ON id {}): SERIAL NAME ROLE; written by `von cert revoke`\n",
            self.von, self.on_id
        );
        for r in &self.revoked {
            out.push_str(&format!("{} {} {}\n", r.serial, r.name, r.role));
        }
        out
    }

    /// Reads `DIR/ledger.json`; an older CA directory gets the upgrade command.
    pub fn load(ca_dir: &Path) -> anyhow::Result<Self> {
        let path = ca_dir.join(LEDGER);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} has no {LEDGER}: the CA was made by an older von that did not record the VON prefix or the addresses it issued. \
                 Upgrade it once with `von ca upgrade --ca {} --prefix NETWORK/LEN CERT...`, naming every certificate issued so far \
                 (the NAME.crt files), so their addresses are checked too",
                ca_dir.display(),
                ca_dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let ledger: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a von CA ledger", path.display()))?;
        if ledger.version != VERSION {
            bail!(
                "{}: ledger version {} is not supported (this von reads version {VERSION}); upgrade von",
                path.display(),
                ledger.version
            );
        }
        ledger.prefix()?;
        Ok(ledger)
    }

    /// Writes `DIR/ledger.json` atomically (temporary file, fsync, rename).
    pub fn save(&self, ca_dir: &Path) -> anyhow::Result<()> {
        let path = ca_dir.join(LEDGER);
        let tmp: PathBuf = ca_dir.join(format!(".{LEDGER}.tmp"));
        let _ = fs::remove_file(&tmp);
        // A ledger of struct fields and strings always serializes.
        let mut text = serde_json::to_vec_pretty(self).expect("ledger serializes");
        text.push(b'\n');
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        if let Ok(d) = fs::File::open(ca_dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The recorded prefix.
    pub fn prefix(&self) -> anyhow::Result<VonPrefix> {
        self.prefix
            .parse()
            .with_context(|| format!("{LEDGER}: prefix {:?}", self.prefix))
    }

    /// The member id for `name`: its old one on a renewal, else a fresh one
    /// no entry has. Refuses, naming the holder, an address outside the
    /// prefix or one a live certificate of another name has.
    ///
    /// A key manager's certificate (`keymgr`) holds no VON address: only its
    /// prefix is read. So its address is neither checked against others nor
    /// does it block a member's. The same holds for `router` and `reserve`
    /// certificates; `keymgr` is true for all three.
    pub fn admit(
        &self,
        name: &str,
        addr: &VonAddr,
        keymgr: bool,
        now: OffsetDateTime,
    ) -> anyhow::Result<MemberId> {
        let prefix = self.prefix()?;
        if !prefix.admits(addr) {
            bail!(
                "--addr {addr} is not a host address of the VON prefix {prefix} this CA records; \
                 give an address inside {prefix} with /{} (e.g. {}/{})",
                prefix.prefix_len(),
                first_host(prefix),
                prefix.prefix_len()
            );
        }
        if let Some(holder) = self.issued.iter().find(|e| {
            !keymgr
                && e.role == "member"
                && e.name != name
                && e.address == addr.addr()
                && live(e, now)
        }) {
            bail!(
                "--addr {} is already issued to {} (member id {}, valid until {}); give {name} another address, \
                 or reissue {} under another address first",
                addr.addr(),
                holder.name,
                holder.member_id,
                holder.not_after,
                holder.name
            );
        }
        Ok(match self.issued.iter().find(|e| e.name == name) {
            Some(e) => MemberId(e.member_id),
            None => random_member_id(|id| self.issued.iter().any(|e| e.member_id == id.0)),
        })
    }

    /// The address a key manager's certificate gets without `--addr`: the
    /// first host of the prefix (never reserved, see [`admit`](Self::admit)).
    pub fn keymgr_addr(&self) -> anyhow::Result<VonAddr> {
        let prefix = self.prefix()?;
        VonAddr::new(first_host(prefix), prefix.prefix_len())
            .with_context(|| format!("{LEDGER}: prefix {prefix}"))
    }

    /// Records `info` (a certificate this CA just issued), replacing the
    /// entry of its name.
    pub fn record(&mut self, info: &CertInfo) {
        let Some(entry) = entry_of(info) else {
            return;
        };
        self.issued.retain(|e| e.name != entry.name);
        self.issued.push(entry);
        self.issued.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// The ledger entry for a member or key-manager certificate.
pub fn entry_of(info: &CertInfo) -> Option<Entry> {
    let id = info.extension.holder.identity()?;
    Some(Entry {
        member_id: id.member_id.0,
        name: id.name.to_string(),
        role: info.extension.holder.role().as_str().to_owned(),
        address: id.addr.addr(),
        serial: info.serial.clone(),
        not_before: rfc3339(&info.not_before),
        not_after: rfc3339(&info.not_after),
    })
}

/// True while the entry's certificate has not expired (an expired
/// certificate's address may be given again).
fn live(e: &Entry, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(&e.not_after, &time::format_description::well_known::Rfc3339)
        .map_or(true, |t| t > now)
}

fn first_host(p: VonPrefix) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(p.network()) + 1)
}

/// Names and ids in an old CA directory's `issued.txt` (`ID NAME ROLE SERIAL`).
pub fn read_old_ledger(path: &Path) -> anyhow::Result<BTreeMap<String, u32>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut ids = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(name)) = (fields.next(), fields.next()) else {
            bail!(
                "{}:{}: expected `ID NAME ROLE SERIAL`, found {line:?}",
                path.display(),
                n + 1
            );
        };
        let id: u32 = id.parse().with_context(|| {
            format!(
                "{}:{}: member id {id:?} is not a number",
                path.display(),
                n + 1
            )
        })?;
        ids.insert(name.to_owned(), id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, id: u32, address: [u8; 4], not_after: &str) -> Entry {
        Entry {
            member_id: id,
            name: name.into(),
            role: "member".into(),
            address: address.into(),
            serial: "01".into(),
            not_before: "2025-01-01T00:00:00Z".into(),
            not_after: not_after.into(),
        }
    }

    #[test]
    fn admit_refuses_outside_the_prefix_and_taken_addresses_and_keeps_ids() {
        let mut l = Ledger::new("grid", 7, "100.64.0.0/24".parse().unwrap());
        l.issued = vec![
            entry("h1", 11, [100, 64, 0, 1], "2999-01-01T00:00:00Z"),
            entry("old", 12, [100, 64, 0, 9], "2000-01-01T00:00:00Z"),
        ];
        let now = OffsetDateTime::now_utc();
        let addr = |s: &str| s.parse::<VonAddr>().unwrap();
        let err = l
            .admit("h2", &addr("100.64.1.2/24"), false, now)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not a host address of the VON prefix 100.64.0.0/24"),
            "{err}"
        );
        let err = l
            .admit("h2", &addr("100.64.0.2/16"), false, now)
            .unwrap_err();
        assert!(err.to_string().contains("100.64.0.0/24"), "{err}");
        let err = l
            .admit("h2", &addr("100.64.0.1/24"), false, now)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("already issued to h1 (member id 11"),
            "{err}"
        );
        // A renewal keeps the name's id and may keep its address.
        assert_eq!(
            l.admit("h1", &addr("100.64.0.1/24"), false, now).unwrap(),
            MemberId(11)
        );
        // An expired certificate's address is free again; new ids are fresh.
        let id = l.admit("h3", &addr("100.64.0.9/24"), false, now).unwrap();
        assert!(id.0 != 0 && id.0 != 11 && id.0 != 12);
    }

    #[test]
    fn a_key_manager_address_is_optional_and_reserves_nothing() {
        let mut l = Ledger::new("grid", 7, "100.64.0.0/24".parse().unwrap());
        let now = OffsetDateTime::now_utc();
        let addr = |s: &str| s.parse::<VonAddr>().unwrap();
        assert_eq!(l.keymgr_addr().unwrap(), addr("100.64.0.1/24"));
        let mut km = entry("km", 20, [100, 64, 0, 1], "2999-01-01T00:00:00Z");
        km.role = "keymgr".into();
        l.issued = vec![km];
        // A member may take the key manager's (unused) address ...
        l.admit("h1", &addr("100.64.0.1/24"), false, now).unwrap();
        l.issued
            .push(entry("h1", 11, [100, 64, 0, 1], "2999-01-01T00:00:00Z"));
        // ... and a second key manager (replica) h1's, but still in the prefix.
        l.admit("km2", &l.keymgr_addr().unwrap(), true, now)
            .unwrap();
        let err = l
            .admit("km2", &addr("100.64.1.1/24"), true, now)
            .unwrap_err();
        assert!(err.to_string().contains("not a host address"), "{err}");
        // A member still may not.
        let err = l
            .admit("h2", &addr("100.64.0.1/24"), false, now)
            .unwrap_err();
        assert!(err.to_string().contains("already issued to h1"), "{err}");
    }

    #[test]
    fn an_old_ca_directory_is_told_how_to_upgrade() {
        let dir = std::env::temp_dir().join(format!("von-ledger-old-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = Ledger::load(&dir).unwrap_err().to_string();
        assert!(err.contains("von ca upgrade --ca"), "{err}");
        let l = Ledger::new("grid", 7, "10.1.0.0/16".parse().unwrap());
        l.save(&dir).unwrap();
        assert_eq!(Ledger::load(&dir).unwrap(), l);
        fs::remove_dir_all(dir).unwrap();
    }
}
