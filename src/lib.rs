//! Fentaris: an MCP security proxy, as a library.
//!
//! - [`config`]: the config model, loading with source positions, validation.
//! - [`policy`]: the pure policy engine (decisions, list filtering, explanations).
//! - [`diagnostics`]: findings with stable codes and their renderers.
//! - [`cli`]: the `fentaris` command line.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod harden;
pub mod identity;
pub mod jsonrpc;
pub mod middleware;
pub mod pinning;
pub mod policy;
pub(crate) mod proxy;
pub mod secret;
pub mod suggest;
pub mod vault;
