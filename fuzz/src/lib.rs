//! Shared pieces of the leasedlock fuzz targets: structure-aware input types (deriving
//! `arbitrary::Arbitrary`, which core itself never depends on), the invariant checks the targets
//! share, and the seed-corpus generator used by `examples/write_seeds.rs`.
//!
//! Every target lives in `fuzz_targets/` and is listed in `Cargo.toml`; `README.md` says how to
//! build and run them on stable Rust.
#![forbid(unsafe_code)]

pub mod codec;
pub mod message;
pub mod seeds;
pub mod world;
