//! Aggregates and the command bus.
