//! The byte-stream stages: [`compress`] (`weir-compress`, zstd as independent [`frames`]) and
//! [`encrypt`] (`weir-encrypt`, with its payload in [`age_stream`]). They work on any input, not only weir archives, and their
//! output is what the reference tools (`zstd -d`, `age -d`) read.

pub mod age_stream;
pub mod compress;
pub mod encrypt;
pub mod frames;
pub mod ranged;
