//! The embedded default store: one redb file, every write a durable
//! (fsync'ed) transaction, so a SIGKILL at any instant leaves either the old
//! or the new state and never a reused epoch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Persisted, Record, Store, StoreError, StoredMember};
use crate::ids::Epoch;

/// `"epoch"` → the highest epoch handed out.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Member id → the stored member (JSON) of the last committed view.
const MEMBERS: TableDefinition<u32, &[u8]> = TableDefinition::new("members");
/// Revoked member name → unused.
const REVOKED: TableDefinition<&str, u8> = TableDefinition::new("revoked");

const EPOCH_KEY: &str = "epoch";

/// The key manager's state in a redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Open (or create) the store at `path`. Fails with
    /// [`StoreError::Locked`] while another process has it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: shown.clone(),
            },
            other => StoreError::Io {
                path: shown.clone(),
                detail: other.to_string(),
            },
        })?;
        let store = Self {
            db,
            path: path.to_owned(),
        };
        // Create the tables up front so reads never meet a missing table.
        store.write(|tx| {
            tx.open_table(META)?;
            tx.open_table(MEMBERS)?;
            tx.open_table(REVOKED)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn io(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Io {
            path: self.path.display().to_string(),
            detail: e.into().to_string(),
        }
    }

    /// Run `f` in one write transaction and commit it durably.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.io(e))?;
        let out = f(&tx).map_err(|e| self.io(e))?;
        // Durability::Immediate is redb's default: commit returns after fsync.
        tx.commit().map_err(|e| self.io(e))?;
        Ok(out)
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Persisted, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.io(e))?;
        let mut out = Persisted::default();
        let meta = tx.open_table(META).map_err(|e| self.io(e))?;
        if let Some(v) = meta.get(EPOCH_KEY).map_err(|e| self.io(e))? {
            out.epoch =
                Epoch(u32::try_from(v.value()).map_err(|_| self.corrupt("epoch", "above u32"))?);
        }
        let members = tx.open_table(MEMBERS).map_err(|e| self.io(e))?;
        for row in members.iter().map_err(|e| self.io(e))? {
            let (k, v) = row.map_err(|e| self.io(e))?;
            let key = format!("members/{}", k.value());
            let member = Record::decode(k.value(), v.value())
                .map_err(|detail| self.corrupt(&key, &detail))?;
            out.members.push(member);
        }
        out.revoked = self.revoked()?;
        Ok(out)
    }

    fn advance_epoch(&mut self, after: Epoch) -> Result<Epoch, StoreError> {
        let next = self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let stored = meta.get(EPOCH_KEY)?.map(|v| v.value()).unwrap_or(0);
            let next = stored.max(u64::from(after.0)) + 1;
            meta.insert(EPOCH_KEY, next)?;
            Ok(next)
        })?;
        // Refuse (rather than wrap) past u32: the value was stored, so every
        // later call fails the same way and no epoch is ever reused.
        u32::try_from(next)
            .map(Epoch)
            .map_err(|_| StoreError::Exhausted {
                what: "epoch",
                at: u32::MAX,
            })
    }

    fn save_members(&mut self, members: &[StoredMember]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(MEMBERS)?;
            table.retain(|_, _| false)?;
            for m in members {
                let bytes = Record::encode(m);
                table.insert(m.id.0, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.open_table(REVOKED)?.insert(name, 1)?.is_none()))
    }

    fn revoked(&self) -> Result<BTreeSet<String>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = tx.open_table(REVOKED).map_err(|e| self.io(e))?;
        let mut out = BTreeSet::new();
        for row in table.iter().map_err(|e| self.io(e))? {
            let (k, _) = row.map_err(|e| self.io(e))?;
            out.insert(k.value().to_owned());
        }
        Ok(out)
    }
}

impl RedbStore {
    fn corrupt(&self, key: &str, detail: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            key: key.to_owned(),
            detail: detail.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;

    fn member(id: u32, name: &str) -> StoredMember {
        StoredMember {
            id: MemberId(id),
            name: name.into(),
            address: format!("100.64.0.{id}").parse().unwrap(),
            underlay: von_config::UnderlayEndpoints::from_names([
                ("a", format!("192.0.2.{id}:4789").parse().unwrap()),
                ("b", format!("198.51.100.{id}:4789").parse().unwrap()),
            ])
            .unwrap(),
            noise_public: [id as u8; 32],
        }
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempdir();
        let path = dir.join("keymgr.redb");
        {
            let mut s = RedbStore::open(&path).unwrap();
            assert_eq!(s.advance_epoch(Epoch(0)).unwrap(), Epoch(1));
            assert_eq!(s.advance_epoch(Epoch(0)).unwrap(), Epoch(2));
            s.save_members(&[member(1, "h1"), member(2, "h2")]).unwrap();
            assert!(s.revoke("h3").unwrap());
            assert!(!s.revoke("h3").unwrap());
        }
        let mut s = RedbStore::open(&path).unwrap();
        let p = s.load().unwrap();
        assert_eq!(p.epoch, Epoch(2));
        assert_eq!(p.members, vec![member(1, "h1"), member(2, "h2")]);
        assert!(p.revoked.contains("h3"));
        assert_eq!(s.advance_epoch(Epoch(0)).unwrap(), Epoch(3));
        assert_eq!(s.advance_epoch(Epoch(10)).unwrap(), Epoch(11));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn second_opener_is_told_to_use_the_socket() {
        let dir = tempdir();
        let path = dir.join("keymgr.redb");
        let _held = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "von-keymgr-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
