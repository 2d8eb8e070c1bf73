//! Cutting a live feed into batches that end on commit boundaries.
//!
//! A batch is what a projector applies in one transaction, with the checkpoint set to the
//! batch's last position. Every event of a commit carries the commit's position, so a batch
//! that ended inside a commit would record a checkpoint that skips the commit's remaining
//! events after a restart. The reader therefore takes the rest of the last commit even when
//! that goes past the batch size.

use std::future::poll_fn;
use std::task::Poll;

use futures::StreamExt;
use secureconnect_events::{EventEnvelope, EventFeed, LogError};

/// A feed and the event read past the end of the previous batch.
pub(crate) struct BatchReader {
    feed: EventFeed,
    /// The first event of the next commit, read while looking for the end of the last batch.
    next: Option<EventEnvelope>,
}

impl BatchReader {
    pub(crate) fn new(feed: EventFeed) -> BatchReader {
        BatchReader { feed, next: None }
    }

    /// Waits for the first event of the next batch. Cancel-safe: when the returned future is
    /// dropped before it completes, no event is lost.
    pub(crate) async fn wait_for_event(&mut self) -> Result<(), LogError> {
        if self.next.is_some() {
            return Ok(());
        }
        match self.feed.next().await {
            Some(Ok(event)) => {
                self.next = Some(event);
                Ok(())
            }
            Some(Err(error)) => Err(error),
            None => Err(feed_ended()),
        }
    }

    /// Takes the event that [`BatchReader::wait_for_event`] waited for and every event the feed
    /// already holds, up to `max_events` plus the rest of the last commit. Never waits for the
    /// feed, so it relies on the feed's promise that the events of one commit arrive together.
    pub(crate) async fn take_batch(
        &mut self,
        max_events: usize,
    ) -> Result<Vec<EventEnvelope>, LogError> {
        let mut batch: Vec<EventEnvelope> = self.next.take().into_iter().collect();
        // Tokio's cooperative budget would make a ready channel inside the feed report
        // `Pending` after about a hundred receives in one task poll, which would cut batches
        // short and could cut them inside a commit.
        tokio::task::unconstrained(poll_fn(|context| {
            loop {
                let at_limit = batch.len() >= max_events;
                match self.feed.poll_next_unpin(context) {
                    Poll::Ready(Some(Ok(event))) => {
                        let same_commit = batch
                            .last()
                            .is_some_and(|last| last.position == event.position);
                        if at_limit && !same_commit {
                            self.next = Some(event);
                            return Poll::Ready(Ok(()));
                        }
                        batch.push(event);
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                    Poll::Ready(None) => return Poll::Ready(Err(feed_ended())),
                    Poll::Pending => return Poll::Ready(Ok(())),
                }
            }
        }))
        .await?;
        Ok(batch)
    }
}

fn feed_ended() -> LogError {
    LogError::Unavailable("the event feed ended".to_owned())
}
