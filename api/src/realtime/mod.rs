//! Real time: the chat socket and the tickets that open it from a browser, the per-node hub
//! that feeds it, and the log follower that feeds the hub and the revoked-session set.

pub mod chat;
pub mod follower;
pub mod frames;
pub mod hub;
pub mod socket;
pub mod tickets;

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/tickets", post(tickets::issue_ticket))
        .route("/ws/chat", get(chat::open_chat_socket))
}
