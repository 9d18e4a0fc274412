/// mimalloc for the binary (the library leaves the allocator to its embedder): a proxied call
/// makes some two hundred small, short-lived allocations (headers, JSON, audit records), and
/// glibc's malloc was about a quarter of the proxy's instructions per call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fentaris::cli::main()
}
