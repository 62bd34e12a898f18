//! The state_dir faults the restart tests make: a directory deleted, or
//! restored from (or cloned to) a copy of its files.

use std::path::Path;

use crate::Result;

/// Deletes `dir` and everything in it.
pub fn remove_dir(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|source| crate::Error::Io {
        what: "remove",
        path: dir.to_owned(),
        source,
    })
}

/// Copies the files of `from` (no subdirectories are needed) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| crate::Error::Io { what, path, source }
    };
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("read", from))? {
        let entry = entry.map_err(io("read", from))?;
        if entry
            .file_type()
            .map_err(io("stat", &entry.path()))?
            .is_file()
        {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .map_err(io("copy", &entry.path()))?;
        }
    }
    Ok(())
}
