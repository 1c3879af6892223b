//! tocsin's pure core: signals -> [`rules`] -> alert transitions -> [`engine`] -> effects.
//!
//! No I/O, no clock, no async runtime: every input carries its time, every output is a
//! value. The collector feeds it from MQTT and writes its effects to DuckDB; tests and the
//! benchmark feed it directly. Keeping it a crate of its own makes that purity a
//! compile-time fact (it cannot reach tokio or DuckDB) and lets it build in seconds.

pub mod engine;
pub mod error;
pub mod rules;
pub mod time;
