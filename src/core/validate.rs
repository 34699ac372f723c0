//! Checks of numbers that come from configs and flags, and of what the machine can hold, made
//! before any of them is used: every model's config validation goes through these, so that a bad
//! value is refused with its key (and flag) named instead of a panic, a hang or a meaningless
//! result later.
//!
//! `key` names the setting as a user wrote it, e.g. `"train.lr (--lr)"`.

use anyhow::{bail, Result};

/// An integer that must be at least 1.
pub fn at_least_one(key: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{key} must be at least 1, got 0");
    }
    Ok(())
}

/// An integer within `lo..=hi`.
pub fn int_in(key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if v < lo || v > hi {
        bail!("{key} must be between {lo} and {hi}, got {v}");
    }
    Ok(())
}

/// A finite number greater than zero (learning rates, standard deviations, epsilons).
pub fn positive(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{key} must be a finite number greater than 0, got {v}");
    }
    Ok(())
}

/// A finite number of at least zero (weight decay, clipping where 0 disables it).
pub fn non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{key} must be a finite number of at least 0, got {v}");
    }
    Ok(())
}

/// A probability in `[0, 1)` (dropout, label smoothing).
pub fn probability_below_one(key: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        bail!("{key} must be at least 0 and below 1, got {v}");
    }
    Ok(())
}

/// A proportion in `(0, 1]` (mask proportions).
pub fn proportion(key: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v <= 1.0) {
        bail!("{key} must be above 0 and at most 1, got {v}");
    }
    Ok(())
}

/// A probability in `[0, 1]` (shares of negatives, where 0 turns a behaviour off).
pub fn probability(key: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("{key} must be at least 0 and at most 1, got {v}");
    }
    Ok(())
}

/// A proportion in `(0, 1)` (held-out fractions).
pub fn open_fraction(key: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v < 1.0) {
        bail!("{key} must be above 0 and below 1, got {v}");
    }
    Ok(())
}

/// Largest sensible `--threads`: more than this many threads per core only adds scheduling
/// work (and thousands of threads bring a machine to its knees).
const THREADS_PER_CORE: usize = 16;

/// A thread count for `--threads`: at least 1, at most 16 per core of this machine.
pub fn threads(v: usize) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = cores * THREADS_PER_CORE;
    if v == 0 || v > max {
        bail!("--threads must be between 1 and {max} ({cores} cores here), got {v}");
    }
    Ok(())
}

/// Memory this process may still take, in bytes: `MemAvailable` on Linux; elsewhere unknown.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// Refuse work whose memory (`bytes`, an estimate made before allocating) exceeds what the
/// machine has available, naming what it is for and the settings that size it.
pub fn fits_in_memory(what: &str, bytes: f64) -> Result<()> {
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        bail!("{what} would need more memory than any machine has");
    }
    if let Some(avail) = available_memory() {
        if bytes > avail as f64 {
            bail!(
                "{what} would need about {} of memory; this machine has {} available",
                gib(bytes),
                gib(avail as f64)
            );
        }
    }
    Ok(())
}

/// `a * b * ...` as a float, so that huge settings cannot overflow before being checked.
pub fn product(factors: &[usize]) -> f64 {
    factors.iter().map(|&f| f as f64).product()
}
