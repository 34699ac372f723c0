//! `tessera`: one binary, a subcommand per model.

mod cli;

use clap::Parser;

// Training allocates and frees large activation buffers every step; glibc's malloc returns them
// to the kernel and pays page faults to get them back (about 12% of a BERT4Rec step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 in both its v2 and v3 option enums).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Keep freed pages instead of returning them to the kernel after 10 ms: a training step
    // frees and reallocates the same buffers, and re-faulting them cost ~15% of the step.
    // SAFETY: sets a process-wide allocator option; called before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Output piped into `head` ends the process quietly as it does any Unix tool, instead of
    // Rust's default (SIGPIPE ignored, so the next print panics on a broken pipe).
    // SAFETY: restores the default disposition of one signal before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        if let Some(i) = e.downcast_ref::<tessera::core::trainer::Interrupted>() {
            // The conventional status of a process stopped by SIGINT.
            eprintln!("{i}");
            std::process::exit(130);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
