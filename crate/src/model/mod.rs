//! Gemma model description: configuration and tensor inventory.

pub mod config;
