//! Credentials files (broker password, TLS private key, SNMP community): refused when every user may open them.
//!
//! [`read_secret`] opens the file once and checks the mode of that same handle (`fstat`), so
//! the file that is checked is the file that is read (no race with a rename in between). Any
//! permission bit for "other" (`mode & 0o007`) refuses it with an [`ExposedCredentials`] error
//! saying how to fix it. Group access (`0640`, owner `root:tocsin`) is the recommended setup,
//! `0600` is fine too.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::describe_io;

/// Permission bits of "other" users: any of them set refuses a credentials file.
pub const OTHER_BITS: u32 = 0o007;

/// Why a credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("{}: {}", path.display(), describe_io(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every user may open the file.
    #[error(transparent)]
    Exposed(#[from] ExposedCredentials),
}

/// A credentials file with permission bits for "other" users. Displays as one line with the
/// path, the mode and the commands that fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", exposed_message(path, *mode))]
pub struct ExposedCredentials {
    pub path: PathBuf,
    /// The permission bits (`0o644`).
    pub mode: u32,
}

fn exposed_message(path: &Path, mode: u32) -> String {
    let how = if mode & 0o004 != 0 {
        "readable"
    } else if mode & 0o002 != 0 {
        "writable"
    } else {
        "accessible"
    };
    let quoted = shell_quote(path);
    format!(
        "{}: {how} by every user (mode {mode:04o}); the agent refuses world-{how} credentials: chmod 0640 {quoted} && chown root:tocsin {quoted}",
        path.display()
    )
}

/// The path as a shell word: unchanged when it is plain, else in single quotes.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Open a credentials file and check the mode of the opened handle: the file, ready to read,
/// or why it cannot be used.
pub fn open_private(path: &Path) -> Result<File, SecretError> {
    let read_error = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
    if mode & OTHER_BITS != 0 {
        return Err(ExposedCredentials {
            path: path.to_path_buf(),
            mode,
        }
        .into());
    }
    Ok(file)
}

/// Read a whole credentials file, refusing one every user may open (see [`open_private`]).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let mut file = open_private(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Write `text` to `dir/name` with `mode`, whatever the umask.
    pub(crate) fn write_with_mode(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn owner_and_group_access_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o600, 0o640, 0o400, 0o440, 0o660] {
            let path = write_with_mode(dir.path(), "pw", "s3cret\n", mode);
            assert_eq!(
                read_secret(&path).expect("private enough"),
                b"s3cret\n",
                "{mode:o}"
            );
        }
    }

    #[test]
    fn any_bit_for_other_users_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (mode, how) in [
            (0o644, "readable"),
            (0o604, "readable"),
            (0o666, "readable"),
            (0o602, "writable"),
            (0o601, "accessible"),
        ] {
            let path = write_with_mode(dir.path(), "mqtt-password", "s3cret\n", mode);
            let e = read_secret(&path).expect_err("exposed").to_string();
            let p = path.display();
            assert_eq!(
                e,
                format!(
                    "{p}: {how} by every user (mode 0{mode:o}); the agent refuses world-{how} credentials: chmod 0640 {p} && chown root:tocsin {p}"
                )
            );
            assert!(!e.contains("s3cret"));
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing");
        let e = read_secret(&path).expect_err("missing");
        assert!(matches!(e, SecretError::Read { .. }));
        assert_eq!(e.to_string(), format!("{}: no such file", path.display()));
    }

    #[test]
    fn odd_paths_are_quoted_for_the_shell() {
        assert_eq!(
            shell_quote(Path::new("/etc/tocsin/mqtt-password")),
            "/etc/tocsin/mqtt-password"
        );
        assert_eq!(shell_quote(Path::new("/etc/my pw")), "'/etc/my pw'");
        assert_eq!(shell_quote(Path::new("/etc/it's")), r"'/etc/it'\''s'");
    }
}
