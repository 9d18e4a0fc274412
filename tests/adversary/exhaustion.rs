//! Attack class: exhaustion (see tests/e2e_adversary.rs).
