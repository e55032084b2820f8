//! `sitegen`: not built yet; see ARCHITECTURE.md.

fn main() {
    eprintln!("sitegen is not built yet");
    std::process::exit(2);
}
