//! The `rlcpc` binary: the allocator, then parse, run and an exit code. The commands
//! are the library's [`rlcpc::cli`], one module per subcommand.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rlcpc::cli;

fn main() {
    rlcpc::keep_freed_pages();
    if let Err(e) = cli::run(cli::parse(std::env::args_os())) {
        eprintln!("error: {}", cli::error_text(&e));
        std::process::exit(1);
    }
}
