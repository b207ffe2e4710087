//! The `tunable` command-line tool.

mod cli;

fn main() {
    // Mesa's Vulkan drivers complain on stderr when XDG_RUNTIME_DIR is unset (headless
    // servers, CI); we never present to a window, so any private directory will do.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("tunable-xdg");
        if std::fs::create_dir_all(&dir).is_ok() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
    if let Err(e) = cli::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
