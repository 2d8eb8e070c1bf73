//! Aggregates and the command bus.

pub mod input;
