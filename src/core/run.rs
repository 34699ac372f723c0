//! A run directory: the resolved config, JSONL metrics per epoch, checkpoints.

use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(path: &Path) -> Result<Self> {
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create run directory {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            anyhow::bail!(
                "run directory {} does not exist (train first)",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write a file atomically: a temp file beside it, then a rename.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.file(name), bytes)
    }

    /// Remove the temporary files ([`write_atomic_with`]) that killed processes left here: those
    /// whose writer is no longer running.
    pub fn remove_stale_temp_files(&self) {
        remove_stale_temp_files(&self.path);
    }

    /// Append one JSON object as a line of `metrics.jsonl`.
    pub fn log_metrics<T: Serialize>(&self, record: &T) -> Result<()> {
        let path = self.file("metrics.jsonl");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(record)?)?;
        Ok(())
    }
}

/// Write `bytes` to `path` so that a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Stream into a temporary sibling of `path` through `fill`, then rename it into place: a crash
/// or an error never leaves a half-written `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    clean_once(dir);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let f =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        if let Err(e) = fill(&mut w) {
            drop(w);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Remove stale temporary files from `dir` the first time this process writes there (reading a
/// directory of thousands of files before every write would make bulk writes quadratic).
fn clean_once(dir: &Path) {
    static CLEANED: std::sync::Mutex<Option<std::collections::HashSet<std::path::PathBuf>>> =
        std::sync::Mutex::new(None);
    let mut done = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
    if done
        .get_or_insert_with(Default::default)
        .insert(dir.to_path_buf())
    {
        remove_stale_temp_files(dir);
    }
}

/// The target name and writer's process id of a temporary file named by [`write_atomic_with`]
/// (`.NAME.tmpPID`).
fn temp_file_parts(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix('.')?;
    let (target, pid) = rest.rsplit_once(".tmp")?;
    Some((target, pid.parse().ok()?))
}

/// Remove the temporary files in `dir` whose writer is no longer running: what a killed writer
/// left behind.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((target, pid)) = temp_file_parts(&name) {
            if !target.is_empty() && pid != std::process::id() && !process_alive(pid) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists (EPERM: it does, but is not ours).
    let alive = unsafe { libc::kill(pid, 0) == 0 };
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
