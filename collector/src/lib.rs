//! tocsin collector.
