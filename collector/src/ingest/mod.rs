//! Ingest stage: MQTT (and later HTTP) intake -> validated, typed engine inputs or rejections.

pub mod decode;
pub mod mqtt;

pub use decode::{Decoded, decode};
