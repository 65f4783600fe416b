//! Opening the redb state file: one `Arc<redb::Database>` for the whole process, shared
//! by the plugins' storage and the sync state, with a note of who holds it.
//!
//! redb locks the file for one process. When another process holds it, the error names
//! that process (from the `<state>.owner` note it wrote when it opened the file) and says
//! what to do, in one line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError};

/// Why the state file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Another process has the file open.
    #[error(
        "the state file {} is in use by {owner}; stop that process first, or, if it is the daemon, use its control API (tandem sync status|logs|pause|resume talk to it when [daemon] has a token)",
        path.display()
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// Who holds it, as far as known.
        owner: String,
        /// The holder's command (`tandem run` for the daemon), when its note says.
        command: Option<String>,
    },
    /// The file is not a readable state database.
    #[error("cannot open the state file {}: {}", path.display(), crate::sync::state::store_message(found))]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What redb found (not a `source`: the message says it).
        found: redb::Error,
    },
    /// The file or its directory could not be created or read.
    #[error("cannot open the state file {}: {message}; check [state] path and its permissions", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// The operating system's (or the database's) reason.
        message: String,
    },
}

/// The open state file; removes its owner note when dropped.
#[derive(Debug)]
pub struct StateFile {
    db: Arc<Database>,
    owner_note: PathBuf,
    note: String,
}

impl StateFile {
    /// Opens (or creates) the file at `path` with the default page cache; `command` names
    /// this process in the note.
    pub fn open(path: &Path, command: &str) -> Result<Self, StateFileError> {
        Self::open_with_cache(path, command, crate::config::DEFAULT_STATE_CACHE)
    }

    /// [`StateFile::open`] with a page cache of at most `cache` bytes (`[state] cache-size`).
    pub fn open_with_cache(path: &Path, command: &str, cache: u64) -> Result<Self, StateFileError> {
        let open_err = |message: String| StateFileError::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let owner_note = owner_path(path);
        let db = match Database::builder()
            .set_cache_size(usize::try_from(cache).unwrap_or(usize::MAX))
            .create(path)
        {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StateFileError::Locked {
                    path: path.to_path_buf(),
                    owner: describe_owner(&owner_note),
                    command: owner_command(&owner_note),
                });
            }
            Err(e) => {
                let e: redb::Error = e.into();
                crate::sync::state::remember_io(&e);
                return Err(match e {
                    // Not a redb file, or one whose pages do not check out.
                    redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                        StateFileError::Damaged {
                            path: path.to_path_buf(),
                            found: redb::Error::Corrupted(io.to_string()),
                        }
                    }
                    e @ redb::Error::Corrupted(_) => StateFileError::Damaged {
                        path: path.to_path_buf(),
                        found: e,
                    },
                    e => open_err(crate::sync::state::store_message(&e)),
                });
            }
        };
        let note = format!(
            "pid {} (`{command}`) since {}",
            std::process::id(),
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        );
        // Best effort: the note only improves the message another process shows.
        let _ = std::fs::write(&owner_note, &note);
        Ok(StateFile {
            db: Arc::new(db),
            owner_note,
            note,
        })
    }

    /// The shared database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        // Only our own note: another process may have taken the file over since.
        if std::fs::read_to_string(&self.owner_note).is_ok_and(|n| n == self.note) {
            let _ = std::fs::remove_file(&self.owner_note);
        }
    }
}

fn owner_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    path.with_file_name(name)
}

/// The command named in the owner note (`pid N (`command`) since T`).
fn owner_command(note: &Path) -> Option<String> {
    let text = std::fs::read_to_string(note).ok()?;
    let start = text.find("(`")? + 2;
    let end = start + text[start..].find("`)")?;
    Some(text[start..end].to_string())
}

impl StateFileError {
    /// Whether the file is held by something other than the daemon (`tandem run`),
    /// as far as its note says: then no control API can answer for it.
    pub fn held_by_other_than_daemon(&self) -> bool {
        matches!(self, StateFileError::Locked { command: Some(c), .. } if c != DAEMON_COMMAND)
    }
}

/// The command the daemon names itself with in the owner note.
pub const DAEMON_COMMAND: &str = "tandem run";

fn describe_owner(note: &Path) -> String {
    match std::fs::read_to_string(note) {
        Ok(text) if !text.trim().is_empty() => {
            format!("another tandem process, {}", text.trim().replace('\n', " "))
        }
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_names_the_first_owner_and_the_note_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.redb");
        let first = StateFile::open(&path, "tandem run").unwrap();
        let err = StateFile::open(&path, "tandem sync status")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("`tandem run`"), "{err}");
        assert!(err.contains("control API"), "{err}");
        assert!(!err.contains('\n'));
        drop(first);
        assert!(!owner_path(&path).exists());
        StateFile::open(&path, "again").unwrap();
    }
}
