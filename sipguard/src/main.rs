fn main() -> std::process::ExitCode {
    sipguard::cli::main()
}
