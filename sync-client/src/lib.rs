//! The `cairn` client library: not built yet; see ARCHITECTURE.md.
