//! Read-your-writes. Every command response carries the log position it appended in
//! `X-Event-Position`, and this node remembers each user's last write. A query first waits,
//! for a bounded time, until the read models it reads have applied that position (or an
//! explicit `X-Min-Position`), and answers 503 with `Retry-After` past the bound, never stale
//! data silently.
//!
//! The memory is per node: a client that spreads requests across nodes passes the position
//! it got back in `X-Min-Position`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use secureconnect_events::EventLog;
use secureconnect_projections::ProjectionName;
use uuid::Uuid;

use super::error::ApiError;
use crate::backends::ReadModelProgress;

pub const EVENT_POSITION_HEADER: &str = "x-event-position";
pub const MIN_POSITION_HEADER: &str = "x-min-position";

pub struct Consistency {
    /// Each user's last appended position on this node. An entry is dropped once every
    /// projection has passed it, so the map holds only users with writes still in flight.
    last_writes: DashMap<Uuid, u64>,
    progress: Arc<dyn ReadModelProgress>,
    /// Gives the log's head, so that an `X-Min-Position` beyond it is rejected, not awaited.
    log: Arc<dyn EventLog>,
    timeout: Duration,
}

impl Consistency {
    pub fn new(
        progress: Arc<dyn ReadModelProgress>,
        log: Arc<dyn EventLog>,
        timeout: Duration,
    ) -> Consistency {
        Consistency {
            last_writes: DashMap::new(),
            progress,
            log,
            timeout,
        }
    }

    pub fn record_write(&self, user_id: Uuid, position: u64) {
        self.last_writes
            .entry(user_id)
            .and_modify(|last| *last = (*last).max(position))
            .or_insert(position);
    }

    /// Waits until `projections` have applied the caller's last write on this node and the
    /// request's `X-Min-Position`, if any.
    pub async fn await_read(
        &self,
        user_id: Option<Uuid>,
        headers: &HeaderMap,
        projections: &[ProjectionName],
    ) -> Result<(), ApiError> {
        let explicit = min_position_header(headers)?;
        let own = user_id
            .and_then(|user_id| self.last_writes.get(&user_id).map(|entry| *entry))
            .unwrap_or(0);
        let required = explicit.unwrap_or(0).max(own);
        if required == 0 || required <= self.progress.min_position() {
            return Ok(());
        }
        if let Some(explicit) = explicit
            && explicit > own
        {
            let head = self
                .log
                .head_position()
                .await
                .map_err(|error| ApiError::BackendUnavailable(error.into()))?;
            if explicit > head {
                return Err(ApiError::validation(format!(
                    "X-Min-Position {explicit} is beyond the log's last position {head}"
                )));
            }
        }
        if self
            .progress
            .wait_for(projections, required, self.timeout)
            .await
        {
            Ok(())
        } else {
            Err(ApiError::unavailable(format!(
                "read models have not yet reached position {required}; retry shortly"
            )))
        }
    }

    /// Drops remembered writes that every projection has already applied.
    pub fn prune(&self) {
        let applied_everywhere = self.progress.min_position();
        self.last_writes
            .retain(|_, position| *position > applied_everywhere);
    }

    pub fn remembered_users(&self) -> usize {
        self.last_writes.len()
    }
}

fn min_position_header(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(MIN_POSITION_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(
                "invalid X-Min-Position header: expected a non-negative integer log position",
            )
        })
}

/// A command's response with its `X-Event-Position` header.
pub struct WithPosition<R>(pub Option<u64>, pub R);

impl<R: IntoResponse> IntoResponse for WithPosition<R> {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        if let Some(position) = self.0 {
            response
                .headers_mut()
                .insert(EVENT_POSITION_HEADER, HeaderValue::from(position));
        }
        response
    }
}
