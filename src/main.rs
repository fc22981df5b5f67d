//! The `rlcpc` binary: the allocator, then parse, run and an exit code. The commands
//! live in `cli/`, one module per subcommand; the library is `rlcpc` (src/lib.rs).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() {
    rlcpc::keep_freed_pages();
    if let Err(e) = cli::run(cli::parse(std::env::args_os())) {
        eprintln!("error: {}", cli::error_text(&e));
        std::process::exit(1);
    }
}
