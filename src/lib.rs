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

/// A hash map for keys Fentaris issues or reads from its own config (request and session ids
/// it made, digests of configured keys, user and server names): foldhash, seeded per
/// process, several times cheaper per lookup than std's SipHash on the path of every call.
/// Maps whose keys a client or an upstream chooses (tool names an upstream lists, client
/// addresses) keep std's SipHash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
