//! The `shardcast` program, built inside the test crate so that end-to-end tests can start
//! it as a separate process (and kill it with SIGKILL) through `CARGO_BIN_EXE_shardcast_node`.

fn main() -> std::process::ExitCode {
    shardcast::cli::main()
}
