//! The canaryd binary: parse arguments, hand over to the library.
use clap::Parser;

fn main() -> std::process::ExitCode {
    canaryd::cli::main(canaryd::cli::Cli::parse())
}
