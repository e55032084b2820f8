//! sitegen's integration tests (one binary; see STYLE.md item 7).

mod support;

mod build_docs;
mod deploy;
mod external_tools;
mod failures;
mod incremental;
