//! End-to-end tests of the API: each test starts the real server on port 0 with its own
//! backend (a temporary folder, or its own JetStream stream and PostgreSQL database) and
//! talks to it over HTTP and WebSocket. `both_backends!` runs a test once per backend.

mod harness;

mod auth;
mod conversations;
mod messages;
mod websocket;
