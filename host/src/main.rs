//! The `tandem` command-line entry point; see [`tandem::cli`].

fn main() -> std::process::ExitCode {
    tandem::cli::main()
}
