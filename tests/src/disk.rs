//! A small filesystem of a test's own that can be frozen: an ext4 image
//! loop-mounted on a directory, so a test can put a state_dir on it and
//! stall every write there with `fsfreeze`, as a slow or hung disk would.
//!
//! The filesystem is thawed, unmounted and its image removed on drop, also
//! when the test fails while it is frozen (a frozen mount left behind would
//! hang every later writer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use von_lab::process;

use crate::Result;

/// Size of each image: room for redb and a few state files.
const IMAGE_MB: u64 = 64;

/// An ext4 filesystem loop-mounted at [`FreezableDisk::path`].
#[derive(Debug)]
pub struct FreezableDisk {
    image: PathBuf,
    mount: PathBuf,
}

impl FreezableDisk {
    /// Makes `<dir>/<name>.img` and mounts it on `<dir>/<name>`.
    pub fn create(dir: &Path, name: &str) -> Result<Self> {
        let image = dir.join(format!("{name}.img"));
        let mount = dir.join(name);
        std::fs::create_dir_all(&mount).expect("mount point");
        let file = std::fs::File::create(&image).expect("image file");
        file.set_len(IMAGE_MB << 20).expect("image size");
        drop(file);
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        let disk = Self { image, mount };
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&disk.image)
            .arg(&disk.mount))?;
        Ok(disk)
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Freezes the filesystem: every write to it blocks until [`thaw`](Self::thaw).
    pub fn freeze(&self) -> Result<()> {
        run(Command::new("fsfreeze").arg("--freeze").arg(&self.mount))
    }

    /// Thaws it: blocked writers go on.
    pub fn thaw(&self) -> Result<()> {
        run(Command::new("fsfreeze").arg("--unfreeze").arg(&self.mount))
    }
}

impl Drop for FreezableDisk {
    fn drop(&mut self) {
        // Thawing an unfrozen filesystem fails harmlessly.
        let _ = Command::new("fsfreeze")
            .arg("--unfreeze")
            .arg(&self.mount)
            .output();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    process::run_ok(cmd, Duration::from_secs(30)).map(|_| ())
}
