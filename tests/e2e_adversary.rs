//! End to end, as an attacker would try it (issue 13): every upstream, every client and every
//! other process of the same user is an adversary. One module per attack class; each test
//! asserts the safe outcome.

mod support;

#[path = "adversary/audit.rs"]
mod audit;
#[path = "adversary/exhaustion.rs"]
mod exhaustion;
#[path = "adversary/output.rs"]
mod output;
#[path = "adversary/sandbox.rs"]
mod sandbox;
#[path = "adversary/uri.rs"]
mod uri;
