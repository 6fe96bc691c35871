//! Subcommands other than `serve`.

pub mod check;
pub mod demo;
pub mod explain;
