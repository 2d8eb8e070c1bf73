//! [`JetStreamTicketStore`]: single-use tickets in a key-value bucket shared by all API
//! nodes. A redemption deletes the ticket only if it is still the revision it read, so of
//! several concurrent redemptions exactly one gets the value.

use std::time::Duration;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::warn;

use secureconnect_events::{LogError, TicketStore};

use crate::unavailable;

/// The bucket's maximum age: the server removes any ticket older than this, whatever its ttl.
pub(crate) const TICKET_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The ticket store on the `<stream_name>_TICKETS` bucket. Cloning is cheap.
///
/// A ticket lives for the shorter of its ttl and [`TICKET_MAX_AGE`] (10 minutes). Keys are
/// the SHA-256 of the ticket id, so listing the bucket does not reveal redeemable ids.
/// Values are the expiry as big-endian Unix milliseconds (8 bytes) followed by the ticket's
/// value.
#[derive(Clone)]
pub struct JetStreamTicketStore {
    bucket: kv::Store,
}

impl JetStreamTicketStore {
    pub(crate) fn new(bucket: kv::Store) -> JetStreamTicketStore {
        JetStreamTicketStore { bucket }
    }
}

fn ticket_key(ticket_id: &str) -> String {
    hex::encode(Sha256::digest(ticket_id.as_bytes()))
}

#[async_trait]
impl TicketStore for JetStreamTicketStore {
    async fn issue(&self, ticket_id: &str, value: Bytes, ttl: Duration) -> Result<(), LogError> {
        if ttl > TICKET_MAX_AGE {
            warn!(
                ?ttl,
                max_age = ?TICKET_MAX_AGE,
                "ticket ttl exceeds the bucket's maximum age; the ticket expires at that age"
            );
        }
        let ttl = chrono::Duration::from_std(ttl.min(TICKET_MAX_AGE))
            .expect("ten minutes fit in a chrono duration");
        let expires_at = (Utc::now() + ttl).timestamp_millis();
        let mut stored = BytesMut::with_capacity(8 + value.len());
        stored.put_i64(expires_at);
        stored.put_slice(&value);

        self.bucket
            .create(ticket_key(ticket_id), stored.freeze())
            .await
            .map_err(|error| match error.kind() {
                kv::CreateErrorKind::AlreadyExists => LogError::Unavailable(
                    "failed to issue a ticket: its id is already in use".to_owned(),
                ),
                _ => unavailable("failed to issue a ticket", error),
            })?;
        Ok(())
    }

    async fn redeem(&self, ticket_id: &str) -> Result<Option<Bytes>, LogError> {
        let key = ticket_key(ticket_id);
        let entry = self
            .bucket
            .entry(key.as_str())
            .await
            .map_err(|error| unavailable("failed to read a ticket", error))?;
        let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        match self
            .bucket
            .delete_expect_revision(key.as_str(), Some(entry.revision))
            .await
        {
            Ok(()) => {}
            // Another redemption deleted it first.
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                return Ok(None);
            }
            Err(error) => return Err(unavailable("failed to redeem a ticket", error)),
        }

        if entry.value.len() < 8 {
            return Err(LogError::Corrupt {
                position: entry.revision,
                reason: format!(
                    "ticket value of {} bytes is shorter than its 8-byte expiry",
                    entry.value.len()
                ),
            });
        }
        let mut expiry = [0_u8; 8];
        expiry.copy_from_slice(&entry.value[..8]);
        if i64::from_be_bytes(expiry) <= Utc::now().timestamp_millis() {
            return Ok(None);
        }
        Ok(Some(entry.value.slice(8..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_key_hides_the_id() {
        let key = ticket_key("ticket.with/odd chars");

        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(key, ticket_key("another ticket"));
    }
}
