//! Attack class: uri (see tests/e2e_adversary.rs).
