//! What the video models (VideoBERT, CBT) read: clip features of videos from an image backbone
//! or precomputed files ([`features`]), and VideoBERT's visual words ([`words`]). Decoding is
//! `core::video`, narrated corpora are `corpora::narration` and `corpora::videos`.

pub mod features;
pub mod probe;
pub mod segments;
pub mod spans;
pub mod words;
