//! Real time: the chat socket, the per-node hub that feeds it, and the log follower that feeds
//! the hub and the revoked-session set.

pub mod follower;
pub mod frames;
pub mod hub;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
