//! `cairn`: not built yet; see ARCHITECTURE.md.

fn main() {
    eprintln!("cairn is not built yet");
    std::process::exit(2);
}
