//! How far each projection has committed, as a `tokio::sync::watch` per projection, so that a
//! query can wait until the read models include the caller's own last write.
//!
//! Commits of the projector runtime in this process raise the watches directly. Commits of
//! other processes reach them through PostgreSQL `NOTIFY` on the `projection_positions`
//! channel, and a re-read of the checkpoint table every second covers notifications lost
//! while the listening connection was down and the embedded store, which has no `NOTIFY`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secureconnect_events::EventLog;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::name::ProjectionName;
use crate::status::{ProjectionStatus, StatusError, read_status};
use crate::store::{Backend, PostgresStore, StoreError};

/// How often the checkpoint table is re-read whatever notifications arrive.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The pause before listening again after the listening connection failed.
const LISTEN_RETRY_DELAY: Duration = Duration::from_secs(1);

/// One watch per projection holding its highest known committed position.
pub(crate) struct PositionWatches {
    senders: [watch::Sender<u64>; 3],
}

impl PositionWatches {
    pub(crate) fn new() -> PositionWatches {
        PositionWatches {
            senders: std::array::from_fn(|_| watch::Sender::new(0)),
        }
    }

    /// Moves `name`'s position up to `position`. Positions never move down here: a stale
    /// notification or poll must not undo a newer one.
    pub(crate) fn raise(&self, name: ProjectionName, position: u64) {
        self.senders[name.index()].send_if_modified(|current| {
            if position > *current {
                *current = position;
                true
            } else {
                false
            }
        });
    }

    fn get(&self, name: ProjectionName) -> u64 {
        *self.senders[name.index()].borrow()
    }

    fn subscribe(&self, name: ProjectionName) -> watch::Receiver<u64> {
        self.senders[name.index()].subscribe()
    }
}

/// A projection did not reach the awaited position in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "projection {projection} is at position {position} and did not reach position \
     {min_position} within {timeout:?}"
)]
pub struct WaitTimedOut {
    pub projection: ProjectionName,
    pub min_position: u64,
    pub position: u64,
    pub timeout: Duration,
}

/// The committed position of each projection, for the API to wait on, possibly in another
/// process than the projectors. Obtained from [`crate::ReadModelStore::positions`]. Clones
/// share one set of watches and one background task, which stops when the last clone and
/// its store are dropped.
#[derive(Clone)]
pub struct ProjectionPositions {
    inner: Arc<PositionsInner>,
}

struct PositionsInner {
    backend: Backend,
    watches: Arc<PositionWatches>,
    /// Cancels the listening and polling tasks when the last handle is dropped.
    _stop: DropGuard,
}

impl ProjectionPositions {
    /// Reads every checkpoint, then starts following them. On PostgreSQL it listens before
    /// reading, so that no commit falls between the read and the first notification.
    pub(crate) async fn start(
        backend: Backend,
        watches: Arc<PositionWatches>,
    ) -> Result<ProjectionPositions, StoreError> {
        let stop = CancellationToken::new();
        let listener = match &backend {
            Backend::Postgres(store) => Some(listen(store).await?),
            Backend::Sqlite(_) => None,
        };
        refresh(&backend, &watches).await?;

        if let Some(listener) = listener {
            tokio::spawn(follow_notifications(
                listener,
                backend.clone(),
                Arc::clone(&watches),
                stop.clone(),
            ));
        }
        tokio::spawn(poll_checkpoints(
            backend.clone(),
            Arc::clone(&watches),
            stop.clone(),
        ));
        Ok(ProjectionPositions {
            inner: Arc::new(PositionsInner {
                backend,
                watches,
                _stop: stop.drop_guard(),
            }),
        })
    }

    /// Returns the highest known committed position of every projection.
    pub fn current(&self) -> BTreeMap<ProjectionName, u64> {
        ProjectionName::ALL
            .into_iter()
            .map(|name| (name, self.inner.watches.get(name)))
            .collect()
    }

    /// Returns the highest known committed position of `name`.
    pub fn position(&self, name: ProjectionName) -> u64 {
        self.inner.watches.get(name)
    }

    /// Subscribes to `name`'s position, which changes whenever the projection commits.
    pub fn subscribe(&self, name: ProjectionName) -> watch::Receiver<u64> {
        self.inner.watches.subscribe(name)
    }

    /// Waits until every projection in `projections` has committed `min_position` or
    /// beyond, or `timeout` has passed.
    pub async fn wait_for(
        &self,
        projections: &[ProjectionName],
        min_position: u64,
        timeout: Duration,
    ) -> Result<(), WaitTimedOut> {
        let deadline = tokio::time::Instant::now() + timeout;
        for &projection in projections {
            let mut receiver = self.inner.watches.subscribe(projection);
            let reached = tokio::time::timeout_at(deadline, async {
                receiver
                    .wait_for(|position| *position >= min_position)
                    .await
                    .is_ok()
            })
            .await;
            if reached != Ok(true) {
                return Err(WaitTimedOut {
                    projection,
                    min_position,
                    position: self.position(projection),
                    timeout,
                });
            }
        }
        Ok(())
    }

    /// Reads the stored progress and lag of every projection against `log`'s head.
    pub async fn status(&self, log: &dyn EventLog) -> Result<Vec<ProjectionStatus>, StatusError> {
        read_status(&self.inner.backend, log, &ProjectionName::ALL).await
    }
}

/// Reads every checkpoint and raises the watches to them.
async fn refresh(backend: &Backend, watches: &PositionWatches) -> Result<(), StoreError> {
    for (name, position) in backend.positions().await? {
        watches.raise(name, position);
    }
    Ok(())
}

/// Opens a listening connection from a pool of its own, so that it never takes a connection
/// from the queries.
async fn listen(store: &PostgresStore) -> Result<PgListener, StoreError> {
    let connect_options = store.pool().connect_options().as_ref().clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(connect_options);
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(crate::store::POSITIONS_CHANNEL).await?;
    Ok(listener)
}

/// Raises the watches from `<projection>:<position>` notifications until `stop`.
async fn follow_notifications(
    mut listener: PgListener,
    backend: Backend,
    watches: Arc<PositionWatches>,
    stop: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => match parse_notification(notification.payload()) {
                Some((name, position)) => watches.raise(name, position),
                None => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring an invalid projection position notification"
                ),
            },
            // The connection dropped and was opened again, and commits in between were never
            // notified.
            Ok(None) => {
                tracing::debug!("listening for projection positions again after a disconnect");
                if let Err(error) = refresh(&backend, &watches).await {
                    tracing::warn!(%error, "reading projection checkpoints failed");
                }
            }
            // The next `try_recv` connects again.
            Err(error) => {
                tracing::warn!(
                    %error,
                    retry_in = ?LISTEN_RETRY_DELAY,
                    "listening for projection positions failed"
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(LISTEN_RETRY_DELAY) => {}
                }
            }
        }
    }
}

fn parse_notification(payload: &str) -> Option<(ProjectionName, u64)> {
    let (name, position) = payload.split_once(':')?;
    Some((name.parse().ok()?, position.parse().ok()?))
}

/// Re-reads every checkpoint each [`POLL_INTERVAL`] until `stop`. Logs the first failure of a
/// run of failures and the recovery, not every attempt.
async fn poll_checkpoints(
    backend: Backend,
    watches: Arc<PositionWatches>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match refresh(&backend, &watches).await {
            Ok(()) if failing => {
                tracing::info!("reading projection checkpoints works again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, "reading projection checkpoints failed, retrying every second");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payload_parses() {
        assert_eq!(
            parse_notification("messages:42"),
            Some((ProjectionName::Messages, 42))
        );
        assert_eq!(parse_notification("messages"), None);
        assert_eq!(parse_notification("audit:42"), None);
        assert_eq!(parse_notification("users:-1"), None);
    }

    #[test]
    fn watches_never_move_down() {
        let watches = PositionWatches::new();
        watches.raise(ProjectionName::Users, 7);
        watches.raise(ProjectionName::Users, 3);
        assert_eq!(watches.get(ProjectionName::Users), 7);
        assert_eq!(watches.get(ProjectionName::Messages), 0);
    }
}
