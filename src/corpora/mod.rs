//! Image–text corpora: the annotated-image format users write for their own data
//! ([`annotated`]), readers of easy-VQA and COCO into it, the image sources MNIST and
//! Fashion-MNIST ([`sources`]), and a generated corpus of scenes with known answers
//! ([`scenes`]).

pub mod annotated;
pub mod coco;
pub mod easy_vqa;
pub mod narration;
pub mod scenes;
pub mod videos;
