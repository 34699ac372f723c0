//! Seeded randomness. Every random stream is derived from (seed, purpose, index) so that a run
//! resumed at an epoch boundary draws exactly what the uninterrupted run would have drawn.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// SplitMix64 finaliser: decorrelates nearby seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one purpose (a small constant naming the stream) and one index (e.g. the epoch).
pub fn derive_seed(seed: u64, purpose: u64, index: u64) -> u64 {
    mix(mix(seed ^ mix(purpose)) ^ index)
}

pub fn rng_for(seed: u64, purpose: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(derive_seed(seed, purpose, index))
}
