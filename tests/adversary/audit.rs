//! Attack class: audit (see tests/e2e_adversary.rs).
