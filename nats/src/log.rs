//! [`JetStreamLog`]: the [`EventLog`] on a JetStream stream. A commit is one message on its
//! aggregate's subject, so the message's stream sequence is the commit's position, and the
//! server checks optimistic concurrency with the expected last sequence of that subject.

use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_trait::async_trait;
use tracing::debug;

use secureconnect_events::{
    AppendError, Appended, Commit, EventEnvelope, EventFeed, EventLog, FeedFilter, FeedStart,
    LogError, StreamId, StreamVersion,
};

use crate::backend::Shared;
use crate::commit::{StoredCommit, encode_commit, stream_subject};
use crate::feed::open_feed;
use crate::reads::OrderedRead;
use crate::unavailable;

/// Maximum number of messages one pull request of a bounded read fetches.
const MAX_PULL_BATCH: usize = 500;

/// The event log on JetStream. Cloning is cheap; clones share the backend's connection.
///
/// Appends are not serialized: each one publishes and awaits its own acknowledgement, so
/// concurrent appends are pipelined on the one connection.
#[derive(Clone)]
pub struct JetStreamLog {
    shared: Arc<Shared>,
}

impl JetStreamLog {
    pub(crate) fn new(shared: Arc<Shared>) -> JetStreamLog {
        JetStreamLog { shared }
    }

    fn subject_prefix(&self) -> &str {
        &self.shared.config.subject_prefix
    }

    /// Builds the result of an append that JetStream recognized as a repeat of the commit
    /// stored at `position`, reading that commit to learn the version it left.
    async fn stored_duplicate(
        &self,
        commit: &Commit,
        position: u64,
    ) -> Result<Appended, AppendError> {
        let message = self
            .shared
            .stream
            .direct_get(position)
            .await
            .map_err(|error| {
                unavailable(
                    format!("failed to read the stored commit at position {position}"),
                    error,
                )
            })?;
        let stored = StoredCommit::decode(
            self.subject_prefix(),
            message.subject.as_str(),
            message.sequence,
            &message.payload,
        )?;
        if stored.stream != commit.stream {
            return Err(AppendError::Invalid(format!(
                "commit id {} was already used within the duplicate window for a commit to \
                 stream {}, not {}",
                commit.commit_id, stored.stream, commit.stream
            )));
        }
        debug!(
            stream = %commit.stream,
            commit_id = %commit.commit_id,
            position,
            "repeated commit recognized as a duplicate"
        );
        Ok(Appended {
            position,
            version: stored.version_after(),
            duplicate: true,
        })
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(&self, commit: Commit) -> Result<Appended, AppendError> {
        if commit.events.is_empty() {
            return Err(AppendError::Invalid(format!(
                "commit {} to stream {} has no events",
                commit.commit_id, commit.stream
            )));
        }
        if commit.expected.sequence == 0 && commit.expected.position != 0
            || commit.expected.sequence != 0 && commit.expected.position == 0
        {
            return Err(AppendError::Invalid(format!(
                "expected version {:?} of stream {} mixes an empty and a non-empty stream",
                commit.expected, commit.stream
            )));
        }
        let body = encode_commit(&commit).map_err(|error| {
            AppendError::Invalid(format!(
                "commit {} cannot be encoded: {error}",
                commit.commit_id
            ))
        })?;
        let subject = stream_subject(self.subject_prefix(), &commit.stream);
        // The server compares the expected sequence with the stream sequence of the subject's
        // last message, which is the stream's position; 0 requires a subject with no message.
        let publish = PublishMessage::build()
            .payload(body.into())
            .message_id(commit.commit_id.to_string())
            .expected_last_subject_sequence(commit.expected.position);

        let acknowledged = match self.shared.jetstream.send_publish(subject, publish).await {
            Ok(acknowledgement) => acknowledgement.await,
            Err(error) => Err(error),
        };
        let ack = match acknowledged {
            Ok(ack) => ack,
            Err(error) => return Err(append_error(error, &commit)),
        };
        if ack.duplicate {
            return self.stored_duplicate(&commit, ack.sequence).await;
        }
        Ok(Appended {
            position: ack.sequence,
            version: StreamVersion {
                sequence: commit.expected.sequence + commit.events.len() as u64,
                position: ack.sequence,
            },
            duplicate: false,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
    ) -> Result<(Vec<EventEnvelope>, StreamVersion), LogError> {
        let subject = stream_subject(self.subject_prefix(), stream);
        let last = match self
            .shared
            .stream
            .direct_get_last_for_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => {
                return Ok((Vec::new(), StreamVersion::EMPTY));
            }
            Err(error) => {
                return Err(unavailable(
                    format!("failed to read the last commit of stream {stream}"),
                    error,
                ));
            }
        };
        let last = StoredCommit::decode(
            self.subject_prefix(),
            last.subject.as_str(),
            last.sequence,
            &last.payload,
        )?;
        let current = last.version_after();
        if last.position <= after.position {
            return Ok((Vec::new(), current));
        }
        // When the last commit is the only one after `after`, no consumer is needed.
        if last.first_sequence() == after.sequence + 1 {
            return Ok((last.into_envelopes().collect(), current));
        }

        let mut reader = OrderedRead::open(
            &self.shared,
            Some(subject),
            after.position + 1,
            MAX_PULL_BATCH,
        )
        .await?;
        let mut events = Vec::new();
        let mut next_sequence = after.sequence + 1;
        loop {
            let commit = reader.next_commit().await?;
            if commit.first_sequence() != next_sequence {
                return Err(LogError::Corrupt {
                    position: commit.position,
                    reason: format!(
                        "stream {stream} continues at aggregate sequence {} where {next_sequence} \
                         was expected",
                        commit.first_sequence()
                    ),
                });
            }
            next_sequence = commit.version_after().sequence + 1;
            let reached_last = commit.position >= last.position;
            events.extend(commit.into_envelopes());
            if reached_last {
                break;
            }
        }
        Ok((events, current))
    }

    async fn read_all(
        &self,
        after_position: u64,
        max_events: usize,
    ) -> Result<Vec<EventEnvelope>, LogError> {
        if max_events == 0 {
            return Ok(Vec::new());
        }
        let head = self.head_position().await?;
        if head <= after_position {
            return Ok(Vec::new());
        }

        // Each commit contains at least one event, so `max_events` messages always suffice.
        let mut reader = OrderedRead::open(
            &self.shared,
            None,
            after_position + 1,
            max_events.min(MAX_PULL_BATCH),
        )
        .await?;
        let mut events = Vec::new();
        loop {
            let commit = reader.next_commit().await?;
            let reached_head = commit.position >= head;
            events.extend(commit.into_envelopes());
            if reached_head || events.len() >= max_events {
                break;
            }
        }
        Ok(events)
    }

    async fn feed(&self, start: FeedStart, filter: FeedFilter) -> Result<EventFeed, LogError> {
        open_feed(&self.shared, start, filter).await
    }

    async fn head_position(&self) -> Result<u64, LogError> {
        let info = self.shared.stream.get_info().await.map_err(|error| {
            unavailable(
                format!(
                    "failed to read the state of stream {}",
                    self.shared.config.stream_name
                ),
                error,
            )
        })?;
        Ok(info.state.last_sequence)
    }

    fn backend_name(&self) -> &'static str {
        "jetstream"
    }
}

/// Maps a failed publish: a wrong last subject sequence (JetStream error 10071) is a
/// conflict, an oversized commit is invalid, and everything else is the log being
/// unavailable.
fn append_error(
    error: async_nats::jetstream::context::PublishError,
    commit: &Commit,
) -> AppendError {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => {
            debug!(
                stream = %commit.stream,
                expected = ?commit.expected,
                "append conflicted with a newer commit"
            );
            AppendError::Conflict {
                stream: commit.stream.clone(),
                expected: commit.expected,
            }
        }
        PublishErrorKind::MaxPayloadExceeded => AppendError::Invalid(format!(
            "commit {} to stream {} is larger than the server accepts: {error}",
            commit.commit_id, commit.stream
        )),
        _ => AppendError::Log(unavailable(
            format!(
                "failed to append commit {} to stream {}",
                commit.commit_id, commit.stream
            ),
            error,
        )),
    }
}
