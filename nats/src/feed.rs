//! Live feeds of the event log through ordered push consumers. The client library recreates
//! such a consumer after a reconnect or a gap, from the last stream sequence it delivered, so
//! a feed resumes by itself.

use std::collections::VecDeque;
use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::{trace, warn};
use uuid::Uuid;

use secureconnect_events::{EventEnvelope, EventFeed, FeedFilter, FeedStart, LogError};

use crate::backend::Shared;
use crate::commit::{StoredCommit, subject_aggregate_type};
use crate::unavailable;

/// Opens a feed. NATS 2.9 allows one filter subject per consumer, so a feed of one aggregate
/// type is filtered by the server on `<prefix>.<type>.>`, and a feed of several types reads
/// `<prefix>.>` and drops the other types here.
pub(crate) async fn open_feed(
    shared: &Arc<Shared>,
    start: FeedStart,
    filter: FeedFilter,
) -> Result<EventFeed, LogError> {
    let prefix = shared.config.subject_prefix.clone();
    let filter_subject = match &filter {
        FeedFilter::AggregateTypes(types) if types.len() == 1 => {
            format!("{prefix}.{}.>", types[0].as_str())
        }
        _ => format!("{prefix}.>"),
    };
    let deliver_policy = match start {
        FeedStart::AfterPosition(0) => DeliverPolicy::All,
        FeedStart::AfterPosition(position) => DeliverPolicy::ByStartSequence {
            start_sequence: position + 1,
        },
        // JetStream starts at the first message it stored at or after `time`. A commit is
        // stored after its `recorded_at` as long as the node's and the server's clocks agree.
        FeedStart::AtTime(time) => DeliverPolicy::ByStartTime {
            start_time: to_nats_time(time)?,
        },
        FeedStart::New => DeliverPolicy::New,
    };
    let consumer = shared
        .stream
        .create_consumer(push::OrderedConfig {
            name: Some(format!("sc_feed_{}", Uuid::new_v4().simple())),
            deliver_subject: shared.client.new_inbox(),
            filter_subject,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|error| unavailable("failed to create a feed consumer", error))?;
    // The server reports where the consumer starts as the stream sequence it has "already
    // delivered": the start sequence minus one, or the head for `New`.
    let mut delivered_before = consumer.cached_info().delivered.stream_sequence;
    if let FeedStart::AfterPosition(position) = start {
        delivered_before = delivered_before.max(position);
    }
    let messages = consumer
        .messages()
        .await
        .map_err(|error| unavailable("failed to start a feed", error))?;

    let state = FeedState {
        messages,
        prefix,
        filter,
        delivered_before,
        buffered: VecDeque::new(),
        finished: false,
    };
    Ok(futures::stream::unfold(state, FeedState::next).boxed())
}

struct FeedState {
    /// The consumer's messages. Dropping the feed drops it, which unsubscribes; the server
    /// removes the consumer 30 seconds later.
    messages: push::Ordered,
    prefix: String,
    filter: FeedFilter,
    /// The stream sequence of the last commit handed on, or the sequence before the start.
    ///
    /// NOTE: async-nats 0.52 recreates an ordered consumer that has delivered nothing yet
    /// from the start of the stream rather than from its configured start, so a feed
    /// recreated early would replay old commits. Skipping every message at or below this
    /// sequence keeps the feed exact; such a replay costs only time.
    delivered_before: u64,
    /// The remaining events of the commit being handed on.
    buffered: VecDeque<EventEnvelope>,
    /// Set after an error, which ends the feed.
    finished: bool,
}

impl FeedState {
    async fn next(mut self) -> Option<(Result<EventEnvelope, LogError>, FeedState)> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            if self.finished {
                return None;
            }
            match self.next_commit().await {
                Ok(Some(commit)) => self.buffered.extend(commit.into_envelopes()),
                Ok(None) => {}
                Err(error) => {
                    self.finished = true;
                    return Some((Err(error), self));
                }
            }
        }
    }

    /// Receives one message and decodes it. Returns `None` for a message the feed skips.
    async fn next_commit(&mut self) -> Result<Option<StoredCommit>, LogError> {
        let message = match self.messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) if error.kind() == push::OrderedErrorKind::MissingHeartbeat => {
                // The ordered consumer recreates itself on the next poll.
                warn!(%error, "feed missed the server's heartbeats, recreating its consumer");
                return Ok(None);
            }
            Some(Err(error)) => return Err(unavailable("the event feed failed", error)),
            None => {
                return Err(LogError::Unavailable(
                    "the NATS connection closed, ending the event feed".to_owned(),
                ));
            }
        };
        let position = message
            .info()
            .map_err(|error| unavailable("a feed message has no stream sequence", error))?
            .stream_sequence;
        if position <= self.delivered_before {
            return Ok(None);
        }
        self.delivered_before = position;
        let subject = message.subject.as_str();
        if !self.wants(subject) {
            return Ok(None);
        }
        trace!(position, subject, "feed received a commit");
        StoredCommit::decode(&self.prefix, subject, position, &message.payload).map(Some)
    }

    /// Returns true unless the filter excludes the subject's aggregate type. A subject whose
    /// type is unknown passes, so that decoding reports it as corrupt.
    fn wants(&self, subject: &str) -> bool {
        match (&self.filter, subject_aggregate_type(&self.prefix, subject)) {
            (FeedFilter::All, _) | (_, None) => true,
            (filter, Some(aggregate_type)) => filter.matches(aggregate_type),
        }
    }
}

fn to_nats_time(time: DateTime<Utc>) -> Result<async_nats::datetime::DateTime, LogError> {
    let nanos =
        i128::from(time.timestamp()) * 1_000_000_000 + i128::from(time.timestamp_subsec_nanos());
    async_nats::datetime::from_nanos(nanos)
        .map_err(|error| unavailable(format!("feed start time {time} is out of range"), error))
}
