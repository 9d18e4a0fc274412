//! Attack class: output (see tests/e2e_adversary.rs).
