//! The `tandem` command-line entry point; see [`tandem::cli`].

/// mimalloc rather than glibc's allocator: a daemon's runs allocate and free from many
/// threads at once, and glibc's malloc and free were about a fifth of an idle poll's CPU
/// (docs/performance.md §3). The benchmarks use the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tandem::allocator::configure();
    tandem::cli::main()
}
