//! The `tandem` command-line entry point.

fn main() {
    println!("tandem {}", env!("CARGO_PKG_VERSION"));
}
