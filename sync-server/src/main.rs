//! `sync-server`: not built yet; see issue "sync-server" and ARCHITECTURE.md.

fn main() {
    eprintln!("sync-server is not built yet");
    std::process::exit(2);
}
