//! End-to-end tests of the whole pipeline live in `tests/it`; this crate has
//! no library code of its own.
