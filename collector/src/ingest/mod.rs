//! Ingest stage: MQTT (and later HTTP) intake -> decode stage -> validated, typed engine inputs or rejections.

pub mod decode;
pub mod mqtt;
pub mod stage;

pub use decode::{Decoded, decode};
