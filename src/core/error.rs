//! Errors that point at the offending input: file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};

/// A malformed input line: where it is and what is wrong with it.
#[derive(Debug, Clone)]
pub struct InputError {
    pub file: PathBuf,
    /// 1-based line number; 0 when the problem is the file as a whole.
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(file: &Path, line: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}
