//! `state_dir/webhooks.json`: the webhooks created over the API, so they survive a restart.
//!
//! The file holds signing secrets, so it is written mode 0600 in a directory created 0700, and
//! always whole and atomically: a temporary file in the same directory, fsync, rename over the
//! old one, fsync the directory. A crash leaves either the old file or the new one, never half
//! of one.
//!
//! What is in it is validated on load by the same code that validates API requests (see
//! `webhooks.rs`); this module only moves bytes and JSON.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The file's name inside `state_dir`.
pub const FILE_NAME: &str = "webhooks.json";

/// The format version written; a file of another version is refused rather than misread.
pub const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    pub webhooks: Vec<StoredWebhook>,
}

/// One webhook as stored. The keys are those of the API and of `[[webhook]]`, plus what only
/// the API knows (its id, times, a rotation in progress). Times are unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredWebhook {
    pub id: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub url: String,
    pub events: Vec<String>,
    pub headers: Vec<String>,
    pub format: String,
    pub signature: String,
    pub signature_header: String,
    pub secret: String,
    pub retries: u64,
    /// The secret being rotated out, while it still signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at_ms: Option<u64>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the file; `Ok(None)` when it (or `state_dir`) does not exist yet. `Err` is a
/// one-line reason (unreadable, not JSON, wrong shape, unknown version).
pub fn read(state_dir: &Path) -> Result<Option<StateFile>, String> {
    let bytes = match fs::read(path(state_dir)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| format!("not a valid webhook state file: {e}"))?;
    if file.version != VERSION {
        return Err(format!("version {} is not supported (this ringcast reads version {VERSION})", file.version));
    }
    Ok(Some(file))
}

/// Moves a file that cannot be loaded out of the way (to `webhooks.json.corrupt-<unix ms>`),
/// so the next save does not overwrite what the operator may want to recover. Returns where it
/// went.
pub fn set_aside(state_dir: &Path, now_ms: u64) -> io::Result<PathBuf> {
    let from = path(state_dir);
    let to = state_dir.join(format!("{FILE_NAME}.corrupt-{now_ms}"));
    fs::rename(&from, &to)?;
    Ok(to)
}

/// Writes `file` atomically, creating `state_dir` (0700) if needed.
pub fn write(state_dir: &Path, file: &StateFile) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if !state_dir.is_dir() {
        DirBuilder::new().recursive(true).mode(0o700).create(state_dir)?;
    }
    let mut bytes = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = state_dir.join(format!(".{FILE_NAME}.tmp-{}-{n}", std::process::id()));
    let written = write_synced(&temp, &bytes).and_then(|()| fs::rename(&temp, path(state_dir)));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    File::open(state_dir)?.sync_all()
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
