//! sync-protocol's integration tests: one binary, one module per area.

mod corpus_replay;
mod props_codec;
mod props_content;
mod props_merge;
mod props_rebase;
mod props_tree;
mod simulation;
mod spec_examples;
