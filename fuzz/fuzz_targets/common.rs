//! What every target shares: the input written as a file (the readers take paths, as users
//! give them), in a fresh directory per run.

#![allow(dead_code)]

use std::path::PathBuf;

/// Writes `data` to `name` in a new temporary directory; returns the directory (kept alive by
/// the caller) and the file's path.
pub fn file(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("write input");
    (dir, path)
}

/// Splits `data` at the first `n - 1` occurrences of the byte 0xFF into `n` parts (missing parts
/// empty): one input for a format of several files.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0xFF).collect();
    out.resize(n, &[]);
    out
}
