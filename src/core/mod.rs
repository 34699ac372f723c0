//! Building blocks shared by every model: attention, encoder layers, embeddings, heads,
//! masking, metrics, optimiser and schedules, checkpoints, run directories and progress.

/// Runs `$body` compiled for AVX2 + FMA when the CPU has them, else for the baseline target.
/// Both give the same results: no operation is contracted into an FMA.
macro_rules! simd_dispatch {
    ($vis:vis $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty $body:block) => {
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body
        }
    };
}

pub mod attention;
pub mod caption_metrics;
pub mod checkpoint;
pub mod coattention;
pub mod decoder;
pub mod device;
pub mod draw;
pub mod dropout;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod fused;
pub mod fused_ops;
pub mod heads;
pub mod images;
pub mod kernels;
pub mod kmeans;
pub mod logistic;
pub mod losses;
pub mod masking;
pub mod meteor;
pub mod metrics;
pub mod norm;
pub mod npy;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod progress;
pub mod resources;
pub mod rng;
pub mod roi_align;
pub mod run;
pub mod trainer;
pub mod validate;
pub mod video;
