//! The `fentaris` command line.
