//! Private key files must be readable by their owner only, as ssh insists
//! for its keys: a TLS or Noise key any local user can read lets that user
//! join the VON as this member (or as the key manager) and unwrap its group
//! keys. Refused with the file, the field and the `chmod` that fixes it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::ConfigError;
use crate::error::Origin;

/// Why `path` may not hold a private key, if it may not: its mode grants
/// group or others any access. A file that does not exist passes here (the
/// code that reads it names it); so does one whose mode cannot be read.
pub fn private_key_problem(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is a private key readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

/// [`private_key_problem`] as a configuration error at `field`.
pub(crate) fn check(origin: Origin<'_>, field: &str, path: &Path) -> Result<(), ConfigError> {
    match private_key_problem(path) {
        Some(message) => Err(origin.field(field, message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_access_is_refused_with_the_chmod() {
        let dir = std::env::temp_dir().join(format!("von-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("h1.key");
        std::fs::write(&key, "secret").unwrap();
        for (mode, refused) in [
            (0o600, false),
            (0o400, false),
            (0o640, true),
            (0o604, true),
            (0o620, true),
        ] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let problem = private_key_problem(&key);
            assert_eq!(problem.is_some(), refused, "mode {mode:o}: {problem:?}");
            if let Some(p) = problem {
                assert!(p.contains(&format!("chmod 600 {}", key.display())), "{p}");
                assert!(p.contains(&format!("{mode:04o}")), "{p}");
            }
        }
        assert!(private_key_problem(&dir.join("missing.key")).is_none());
        let err = check(Origin("von.toml"), "von[0].key", &{
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            key.clone()
        })
        .unwrap_err();
        assert_eq!(err.path(), Some("von[0].key"));
        assert!(
            err.to_string().starts_with("von.toml: von[0].key: "),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
