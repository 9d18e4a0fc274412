//! The `rmcp-check` program (see the crate documentation); tests/e2e_rmcp.rs runs it.

fn main() {
    rmcp_check::main();
}
