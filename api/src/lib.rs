//! The SecureConnect API server: HTTP and WebSocket handlers, authentication, configuration,
//! and the application constructor that the `secureconnect` binary and the tests share.

pub mod app;
pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
pub mod http;
pub mod realtime;
pub mod router;
pub mod routes;
pub mod telemetry;

pub use app::{AppState, Application, ServerRole};
pub use config::Settings;
