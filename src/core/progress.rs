//! Progress bars for anything longer than a second. Hidden when stderr is not a terminal or when
//! machine-readable output was asked for.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bar(len: u64, label: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}
