//! Attack class: sandbox (see tests/e2e_adversary.rs).
