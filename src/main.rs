fn main() -> std::process::ExitCode {
    fentaris::cli::main()
}
