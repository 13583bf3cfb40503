//! `leasedlock-cli`: the `leasedlock` command. Leases, locks and leader election on the Azure IoT
//! Operations state store from the shell, a local state store (`serve`), a demo and benchmarks.
//!
//! The library half holds what is worth reusing or testing on its own: the embedded default
//! broker, child-process supervision for `lock` and `elect` (with its guard process), and
//! argument parsing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The doc comments in `args` are clap's --help text (`[default: ...]`, `<host>`), not rustdoc.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
pub mod args;
mod deadline;
pub mod duration;
pub mod embedded_broker;
pub mod exit;
pub mod guard;
pub mod logging;
pub mod stats;
pub mod supervise;

mod commands;
mod run;

pub use run::main_entry;
