//! Integration tests of the working copy.
