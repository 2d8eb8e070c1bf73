//! The REST and WebSocket routes, one module per API area, each owning its router.

pub mod auth;
pub mod conversations;
pub mod health;
pub mod messages;
pub mod users;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().merge(health::router()).nest(
        "/v1",
        Router::new()
            .merge(auth::router())
            .merge(users::router())
            .merge(conversations::router())
            .merge(messages::router())
            .merge(crate::realtime::router()),
    )
}
