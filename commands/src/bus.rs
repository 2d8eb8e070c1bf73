//! The command bus: loads an aggregate, lets it decide on a command, and appends the events
//! to the event log with optimistic concurrency.
//!
//! It calls the aggregate and the [`EventLog`] directly instead of going through cqrs-es's
//! `CqrsFramework`, because callers need the log position of each append for
//! read-your-writes. The cache, snapshots and conflict retries below also depend on our log's
//! stream versions, which cqrs-es's event store interface does not expose.
//!
//! Each node keeps recently used aggregates in memory, one async mutex per aggregate, so
//! commands to one aggregate take turns on a node and cost one round trip to the log each.
//! Another node may have appended since the cache was filled. The append then conflicts, so
//! the bus reads only the stream's tail, decides again and retries.

mod cache;
mod error;

use std::cmp::Ordering;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use rand::Rng;
use secureconnect_events::domain::RecordedEvent;
use secureconnect_events::{
    AggregateId, AggregateType, AppendError, Appended, Commit, CommitMetadata, EventEnvelope,
    EventLog, LogError, Snapshot, SnapshotStore, StreamId, StreamVersion,
};
use tokio::time::Instant;
use tracing::{debug, warn};
use uuid::Uuid;

use cache::{AggregateCache, Loaded};
pub use error::{BusError, CommandError};

/// An aggregate the bus can load, run commands on and snapshot.
pub trait ManagedAggregate:
    Aggregate<
        Event: RecordedEvent,
        Command: Clone + Send + Sync,
        Error: Send + Sync + 'static,
        Services: Default,
    > + Clone
    + 'static
{
    /// The kind of stream this aggregate lives in: its stream ids are
    /// `<AGGREGATE_TYPE>/<aggregate id>`.
    const AGGREGATE_TYPE: AggregateType;
    /// Saves a snapshot each time the stream's sequence crosses a multiple of this number;
    /// `None` (or zero) for aggregates whose streams stay short.
    const SNAPSHOT_EVERY: Option<u64>;
    /// The version of the state's serialized layout. Change it whenever the state's fields
    /// change, so that snapshots of the old layout are ignored instead of misread.
    const STATE_VERSION: u32;
}

/// Tuning of the command bus.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// How many aggregates, of all types together, this node keeps loaded in memory.
    pub cache_capacity: NonZeroUsize,
    /// How many times a command is decided and appended before a conflict is returned to the
    /// caller. Every attempt after the first follows a conflict.
    pub max_attempts: u32,
    /// The delay before the first retry after a conflict, and the interval at which a stream
    /// is polled while another node keeps appending to it. Each further attempt doubles it,
    /// and each delay is jittered between half and the whole of its value.
    pub conflict_backoff: Duration,
    /// The maximum time a command waits, from its first conflict, for another node to stop
    /// appending to the same stream before it tries again regardless.
    pub max_contention_wait: Duration,
    /// The minimum age of a claim on an email address or username whose owner never
    /// registered, before another registration may declare the owner's registration dead and
    /// take the value over.
    pub claim_grace_period: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            cache_capacity: NonZeroUsize::new(10_000).expect("10,000 is not zero"),
            max_attempts: 5,
            conflict_backoff: Duration::from_millis(5),
            max_contention_wait: Duration::from_secs(2),
            claim_grace_period: Duration::from_secs(5 * 60),
        }
    }
}

/// The outcome of a command that the aggregate accepted.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The events the command recorded; empty when the command changed nothing.
    pub events: Vec<A::Event>,
    /// The log position of the commit, or `None` when there were no events to append.
    pub position: Option<u64>,
    /// The stream's version after the command.
    pub version: StreamVersion,
    /// The aggregate's state after the command.
    pub state: A,
}

pub struct CommandBus {
    log: Arc<dyn EventLog>,
    snapshots: Arc<dyn SnapshotStore>,
    options: BusOptions,
    cache: AggregateCache,
}

impl CommandBus {
    pub fn new(
        log: Arc<dyn EventLog>,
        snapshots: Arc<dyn SnapshotStore>,
        options: BusOptions,
    ) -> CommandBus {
        CommandBus {
            log,
            snapshots,
            cache: AggregateCache::new(options.cache_capacity),
            options,
        }
    }

    pub fn options(&self) -> &BusOptions {
        &self.options
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Returns how many aggregates this node keeps in memory now.
    pub fn cached_aggregates(&self) -> usize {
        self.cache.len()
    }

    /// Runs `command` on the aggregate `id` of type `A` and appends the events it records.
    ///
    /// The decision is made on the cached state and appended at the cached version. When
    /// another node appended first, the bus reads the stream's tail, decides again and
    /// retries, up to [`BusOptions::max_attempts`] times in all.
    pub async fn execute<A: ManagedAggregate>(
        &self,
        id: AggregateId,
        command: A::Command,
        metadata: CommitMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let stream = StreamId::new(A::AGGREGATE_TYPE, id);
        let slot = self.cache.slot::<A>(&stream);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(
                self.load_from_log::<A>(&stream)
                    .await
                    .map_err(BusError::widen)?,
            );
        }
        let loaded = guard.as_mut().expect("the slot was filled above");
        let result = self
            .decide_and_append(&stream, loaded, command, metadata)
            .await;
        let is_empty = loaded.version.is_empty();
        if matches!(result, Err(CommandError::Corrupt { .. })) {
            // The state may hold part of an unreadable tail, so the next command reloads.
            *guard = None;
        }
        drop(guard);
        if is_empty {
            self.cache.forget(&stream, &slot);
        }
        result
    }

    /// Returns the current state and version of the aggregate `id`, for decisions that read
    /// an aggregate without changing it, such as login. The cached state is first brought up
    /// to the log's tail, so the result is never older than the log was when this was called.
    pub async fn load<A: ManagedAggregate>(
        &self,
        id: AggregateId,
    ) -> Result<(A, StreamVersion), BusError> {
        let stream = StreamId::new(A::AGGREGATE_TYPE, id);
        let slot = self.cache.slot::<A>(&stream);
        let mut guard = slot.lock().await;
        let result = match guard.as_mut() {
            None => self.load_from_log::<A>(&stream).await.map(|loaded| {
                let state = (loaded.state.clone(), loaded.version);
                *guard = Some(loaded);
                state
            }),
            Some(loaded) => self
                .catch_up(&stream, loaded)
                .await
                .map(|_| (loaded.state.clone(), loaded.version)),
        };
        if matches!(result, Err(CommandError::Corrupt { .. })) {
            *guard = None;
        }
        let is_empty = guard
            .as_ref()
            .is_some_and(|loaded| loaded.version.is_empty());
        drop(guard);
        if is_empty {
            self.cache.forget(&stream, &slot);
        }
        result
    }

    async fn decide_and_append<A: ManagedAggregate>(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        command: A::Command,
        metadata: CommitMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let services = A::Services::default();
        let mut attempt = 1;
        let mut contention_started = None;
        loop {
            let mut decided = loaded.state.clone();
            let sink = EventSink::default();
            decided
                .handle(command.clone(), &services, &sink)
                .await
                .map_err(CommandError::Domain)?;
            let events = sink.collect().await;
            if events.is_empty() {
                debug!(%stream, "command recorded no events");
                return Ok(Executed {
                    events,
                    position: None,
                    version: loaded.version,
                    state: decided,
                });
            }

            let commit = Commit {
                stream: stream.clone(),
                expected: loaded.version,
                commit_id: Uuid::now_v7(),
                recorded_at: Utc::now(),
                metadata: metadata.clone(),
                events: events.iter().map(RecordedEvent::to_new_event).collect(),
            };
            match self.append_retrying_unavailable(commit).await {
                Ok(appended) => {
                    let previous = loaded.version;
                    loaded.state = decided;
                    loaded.version = appended.version;
                    debug!(
                        %stream,
                        events = events.len(),
                        position = appended.position,
                        sequence = appended.version.sequence,
                        attempt,
                        "command appended"
                    );
                    if crosses_snapshot_interval::<A>(previous, appended.version) {
                        self.save_snapshot_in_background(stream, loaded);
                    }
                    return Ok(Executed {
                        events,
                        position: Some(appended.position),
                        version: appended.version,
                        state: loaded.state.clone(),
                    });
                }
                Err(AppendError::Conflict { .. }) if attempt < self.options.max_attempts => {
                    warn!(
                        %stream,
                        attempt,
                        max_attempts = self.options.max_attempts,
                        "append conflicted, reading the stream tail and retrying"
                    );
                    let contention_started = *contention_started.get_or_insert_with(Instant::now);
                    self.prepare_retry(stream, loaded, attempt, contention_started)
                        .await
                        .map_err(BusError::widen)?;
                    attempt += 1;
                }
                Err(AppendError::Conflict { .. }) => {
                    warn!(%stream, attempts = attempt, "append conflicted on every attempt, giving up");
                    return Err(CommandError::Conflict {
                        stream: stream.clone(),
                    });
                }
                Err(AppendError::Log(error)) => return Err(CommandError::Log(error)),
                Err(AppendError::Invalid(reason)) => {
                    return Err(CommandError::InvalidCommit {
                        stream: stream.clone(),
                        reason,
                    });
                }
            }
        }
    }

    /// Brings `loaded` up to date after conflict number `attempt`, waiting first so that the
    /// next append has a chance to win.
    ///
    /// A node that keeps appending to a stream wins every race against a node that must
    /// read the tail after each conflict, because its next append is sent before the other
    /// node's read returns. So after the first retry has also lost, this waits until the
    /// stream stays unchanged for one polling interval (the other node's burst is over), or
    /// until [`BusOptions::max_contention_wait`] has passed since the first conflict.
    async fn prepare_retry<A: ManagedAggregate>(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        attempt: u32,
        contention_started: Instant,
    ) -> Result<(), BusError> {
        tokio::time::sleep(conflict_delay(self.options.conflict_backoff, attempt)).await;
        self.catch_up(stream, loaded).await?;
        if attempt < 2 {
            return Ok(());
        }
        let deadline = contention_started + self.options.max_contention_wait;
        loop {
            let delay = conflict_delay(self.options.conflict_backoff, attempt);
            if Instant::now() + delay > deadline {
                debug!(%stream, "the stream is still busy, retrying at the contention deadline");
                return Ok(());
            }
            tokio::time::sleep(delay).await;
            if self.catch_up(stream, loaded).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Appends `commit`, and when the log reports itself unavailable appends the same commit
    /// once more. The log stores each commit id once, so the second try cannot store the
    /// events twice even if the first one was stored and only its acknowledgement was lost.
    async fn append_retrying_unavailable(&self, commit: Commit) -> Result<Appended, AppendError> {
        match self.log.append(commit.clone()).await {
            Err(AppendError::Log(LogError::Unavailable(reason))) => {
                warn!(
                    stream = %commit.stream,
                    commit_id = %commit.commit_id,
                    %reason,
                    "event log unavailable during append, retrying the same commit once"
                );
                self.log.append(commit).await
            }
            other => other,
        }
    }

    /// Loads an aggregate that is not cached: from its latest snapshot, when one of the
    /// current layout exists, and the events after it.
    async fn load_from_log<A: ManagedAggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Loaded<A>, BusError> {
        let mut loaded = match snapshot_interval::<A>() {
            Some(_) => self.load_snapshot::<A>(stream).await,
            None => None,
        }
        .unwrap_or(Loaded {
            state: A::default(),
            version: StreamVersion::EMPTY,
        });
        let from_snapshot = loaded.version;
        let replayed = self.catch_up(stream, &mut loaded).await?;
        debug!(
            %stream,
            snapshot_sequence = from_snapshot.sequence,
            replayed,
            "aggregate loaded"
        );
        // A node whose snapshot save failed leaves a long tail; save one now so that the
        // next load is short again.
        if snapshot_interval::<A>().is_some_and(|every| replayed as u64 >= every) {
            self.save_snapshot_in_background(stream, &loaded);
        }
        Ok(loaded)
    }

    /// Reads the latest snapshot, or `None` when there is none that this version can use.
    /// Snapshots are only a cache, so a failure to read one is logged and the stream is
    /// replayed from its start.
    async fn load_snapshot<A: ManagedAggregate>(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let snapshot = match self.snapshots.load_snapshot(stream).await {
            Ok(snapshot) => snapshot?,
            Err(error) => {
                warn!(%stream, %error, "loading a snapshot failed, replaying the whole stream");
                return None;
            }
        };
        if snapshot.state_version != A::STATE_VERSION {
            debug!(
                %stream,
                snapshot_state_version = snapshot.state_version,
                state_version = A::STATE_VERSION,
                "ignoring a snapshot of another state layout"
            );
            return None;
        }
        match serde_json::from_value(snapshot.state) {
            Ok(state) => Some(Loaded {
                state,
                version: snapshot.version,
            }),
            Err(error) => {
                warn!(%stream, %error, "a snapshot cannot be decoded, replaying the whole stream");
                None
            }
        }
    }

    /// Reads the events after `loaded.version` and applies them. Returns how many there were.
    async fn catch_up<A: ManagedAggregate>(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
    ) -> Result<usize, BusError> {
        let (envelopes, version) = self
            .log
            .read_stream(stream, loaded.version)
            .await
            .map_err(CommandError::Log)?;
        apply_envelopes(stream, loaded, &envelopes)?;
        match version.sequence.cmp(&loaded.version.sequence) {
            Ordering::Equal => loaded.version = version,
            // Events arrived between reading them and reading the version. Keeping the version
            // of the last applied event makes the next append conflict and read them.
            Ordering::Greater => {}
            Ordering::Less => {
                return Err(CommandError::Corrupt {
                    stream: stream.clone(),
                    reason: format!(
                        "the log reports sequence {}, but sequence {} was already read",
                        version.sequence, loaded.version.sequence
                    ),
                });
            }
        }
        Ok(envelopes.len())
    }

    fn save_snapshot_in_background<A: ManagedAggregate>(
        &self,
        stream: &StreamId,
        loaded: &Loaded<A>,
    ) {
        let snapshots = Arc::clone(&self.snapshots);
        let stream = stream.clone();
        let state = loaded.state.clone();
        let version = loaded.version;
        tokio::spawn(async move {
            let state = match serde_json::to_value(&state) {
                Ok(state) => state,
                Err(error) => {
                    warn!(%stream, %error, "serializing a snapshot failed");
                    return;
                }
            };
            let snapshot = Snapshot {
                version,
                state,
                state_version: A::STATE_VERSION,
            };
            match snapshots.save_snapshot(&stream, snapshot).await {
                Ok(()) => debug!(%stream, sequence = version.sequence, "snapshot saved"),
                Err(error) => warn!(%stream, %error, "saving a snapshot failed"),
            }
        });
    }
}

/// Computes the pause before retry `attempt + 1`: `backoff` doubled for each earlier retry, then
/// jittered between half and the whole of that, so that competing nodes spread out.
fn conflict_delay(backoff: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let full = backoff.saturating_mul(1 << doublings);
    let fraction: f64 = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(fraction)
}

/// Applies envelopes read from the log, checking that they continue the stream without a gap.
fn apply_envelopes<A: ManagedAggregate>(
    stream: &StreamId,
    loaded: &mut Loaded<A>,
    envelopes: &[EventEnvelope],
) -> Result<(), BusError> {
    for envelope in envelopes {
        let expected_sequence = loaded.version.sequence + 1;
        if envelope.aggregate_sequence != expected_sequence {
            return Err(CommandError::Corrupt {
                stream: stream.clone(),
                reason: format!(
                    "expected sequence {expected_sequence}, read sequence {} at position {}",
                    envelope.aggregate_sequence, envelope.position
                ),
            });
        }
        let event = A::Event::from_envelope(envelope).map_err(|error| CommandError::Corrupt {
            stream: stream.clone(),
            reason: format!("event at position {}: {error}", envelope.position),
        })?;
        loaded.state.apply(event);
        loaded.version = StreamVersion {
            sequence: envelope.aggregate_sequence,
            position: envelope.position,
        };
    }
    Ok(())
}

fn snapshot_interval<A: ManagedAggregate>() -> Option<u64> {
    A::SNAPSHOT_EVERY.filter(|&every| every > 0)
}

/// Returns whether growing the stream from `previous` to `current` passed a multiple of the
/// aggregate's snapshot interval.
fn crosses_snapshot_interval<A: ManagedAggregate>(
    previous: StreamVersion,
    current: StreamVersion,
) -> bool {
    snapshot_interval::<A>()
        .is_some_and(|every| previous.sequence / every != current.sequence / every)
}

#[cfg(test)]
mod tests;
