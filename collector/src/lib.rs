//! tocsin collector: MQTT intake -> rules -> engine (incidents, tickets) -> DuckDB store, with an HTTP API.
//!
//! The folders follow the data path: [`ingest`] -> [`rules`] -> [`engine`] -> [`store`];
//! [`notify`] delivers the notification outbox (webhooks, e-mail, MQTT);
//! [`api`] reads the store; [`broker`] is the optional embedded MQTT broker; [`app`] wires
//! them together; [`control`] carries reloads and operator commands into the engine's task;
//! [`cli`] is the `tocsin` operator client; [`quickstart`] is the one-command demo.

pub mod api;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod control;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod quickstart;
pub mod store;

pub use tocsin_core::{engine, rules, time};

pub use app::{Running, StartError, run, start};
pub use config::CollectorConfig;
