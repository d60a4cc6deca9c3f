//! The `shardcast` command line.

fn main() -> std::process::ExitCode {
    shardcast::cli::main()
}
