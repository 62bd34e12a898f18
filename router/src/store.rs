//! The reservation service's registry: the [`Registry`] seam and its
//! default, one redb file on disk (`state` in reserve.toml), every write a
//! durable (fsync'ed) transaction, so a service killed at any instant
//! restarts with exactly the reservations that every router committed and
//! that were not yet released. The replicated registry behind the same seam
//! is [`crate::replica::EtcdRegistry`].
//!
//! Same pattern as the key manager's store (`keymgr/src/store/redb.rs`): the
//! tables are created at open, values are JSON so a field added later reads
//! old rows with its default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::model::ReservationSpec;

/// ON id → the reservation (JSON of [`ReservationSpec`]: name, rate, path).
const RESERVATIONS: TableDefinition<u32, &[u8]> = TableDefinition::new("reservations");

/// Where the service keeps its registry: written only once every router
/// committed a reservation, and forgotten before it is released.
pub trait Registry: Send + std::fmt::Debug {
    /// Every stored reservation, by ON id.
    fn load(&self) -> Result<BTreeMap<u32, ReservationSpec>>;
    /// Records a reservation (durably, before it returns).
    fn put(&self, spec: &ReservationSpec) -> Result<()>;
    /// Forgets `on_id` (durably); a missing one is not an error.
    fn remove(&self, on_id: u32) -> Result<()>;
}

impl Registry for RegistryStore {
    fn load(&self) -> Result<BTreeMap<u32, ReservationSpec>> {
        RegistryStore::load(self)
    }
    fn put(&self, spec: &ReservationSpec) -> Result<()> {
        RegistryStore::put(self, spec)
    }
    fn remove(&self, on_id: u32) -> Result<()> {
        RegistryStore::remove(self, on_id)
    }
}

/// The registry in a redb file.
pub struct RegistryStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RegistryStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    /// Fails while another process has it open: two services must not share
    /// one registry.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create the directory of", shown.clone(), e))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::invalid(
                format!("registry {shown}"),
                "already open by another process: is another `von reserve serve` running? \
                 give each service its own `state` file",
            ),
            other => Error::invalid(format!("registry {shown}"), other.to_string()),
        })?;
        let store = Self {
            db,
            path: path.to_owned(),
        };
        store.write(|tx| {
            tx.open_table(RESERVATIONS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored reservation, by ON id.
    pub fn load(&self) -> Result<BTreeMap<u32, ReservationSpec>> {
        let tx = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = tx.open_table(RESERVATIONS).map_err(|e| self.fail(e))?;
        let mut out = BTreeMap::new();
        for row in table.iter().map_err(|e| self.fail(e))? {
            let (k, v) = row.map_err(|e| self.fail(e))?;
            let spec: ReservationSpec = serde_json::from_slice(v.value()).map_err(|e| {
                Error::invalid(
                    format!("registry {} reservation {}", self.path.display(), k.value()),
                    format!("{e}; the file is damaged: restore it or remove that ON's row"),
                )
            })?;
            if spec.on_id != k.value() {
                return Err(Error::invalid(
                    format!("registry {} reservation {}", self.path.display(), k.value()),
                    format!("its record names ON id {}; the file is damaged", spec.on_id),
                ));
            }
            out.insert(spec.on_id, spec);
        }
        Ok(out)
    }

    /// Records a reservation every router committed (durably, before it
    /// returns).
    pub fn put(&self, spec: &ReservationSpec) -> Result<()> {
        let json = serde_json::to_vec(spec)
            .map_err(|e| Error::Protocol(format!("encoding reservation {}: {e}", spec.on_id)))?;
        self.write(|tx| {
            tx.open_table(RESERVATIONS)?
                .insert(spec.on_id, json.as_slice())?;
            Ok(())
        })
    }

    /// Forgets `on_id` (durably); a missing one is not an error.
    pub fn remove(&self, on_id: u32) -> Result<()> {
        self.write(|tx| {
            tx.open_table(RESERVATIONS)?.remove(on_id)?;
            Ok(())
        })
    }

    fn fail(&self, e: impl Into<redb::Error>) -> Error {
        Error::invalid(
            format!("registry {}", self.path.display()),
            format!("{}; check the disk and the file's permissions", e.into()),
        )
    }

    /// Runs `f` in one write transaction and commits it durably
    /// (`Durability::Immediate`, redb's default: commit returns after fsync).
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        let out = f(&tx).map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(on_id: u32) -> ReservationSpec {
        ReservationSpec {
            name: format!("von{on_id}"),
            on_id,
            rate_bps: 20_000_000,
            packet: 1432,
            dscp: 46,
            port: 4789,
            path: vec![
                "r1:sha".parse().expect("link"),
                "r1:shb".parse().expect("link"),
            ],
        }
    }

    #[test]
    fn rows_survive_a_reopen_and_removal_is_durable() {
        let dir = std::env::temp_dir().join(format!("von-router-store-{}", std::process::id()));
        let path = dir.join("sub").join("reserve.redb");
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = RegistryStore::open(&path).expect("create");
            s.put(&spec(7)).expect("put");
            s.put(&spec(9)).expect("put");
            s.remove(9).expect("remove");
            s.remove(42).expect("a missing row is no error");
        }
        let s = RegistryStore::open(&path).expect("reopen");
        let loaded = s.load().expect("load");
        assert_eq!(loaded.into_values().collect::<Vec<_>>(), vec![spec(7)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
