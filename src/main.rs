//! The `rlcpc` binary: the allocator, then parse, run and an exit code. The commands
//! are the library's [`rlcpc::cli`], one module per subcommand.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rlcpc::{cli, console};

fn main() {
    rlcpc::keep_freed_pages();
    let result = cli::run(cli::parse(std::env::args_os()));
    // A closed standard output or error (`rlcpc … | head`) stopped the command as
    // Ctrl-C would: exit quietly with the status a shell gives a closed pipe.
    if console::closed() {
        std::process::exit(console::CLOSED_EXIT_STATUS);
    }
    if let Err(e) = result {
        rlcpc::errln!("error: {}", cli::error_text(&e));
        std::process::exit(1);
    }
}
