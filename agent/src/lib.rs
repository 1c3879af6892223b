//! tocsin agent.
