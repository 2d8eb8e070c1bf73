//! [`InMemoryTicketStore`]: single-use tickets in process memory, for a deployment with one
//! API node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::log::LogError;
use crate::realtime::TicketStore;

/// The ticket count below which expired tickets are not swept.
const MIN_SWEEP_THRESHOLD: usize = 64;

/// The lifetime given to a ticket whose TTL would overflow the clock: 100 years.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A [`TicketStore`] in memory. Clones share the tickets. A redemption removes the ticket
/// under a lock, so of two concurrent redemptions at most one gets the value.
#[derive(Clone, Default)]
pub struct InMemoryTicketStore {
    tickets: Arc<Mutex<Tickets>>,
}

#[derive(Default)]
struct Tickets {
    by_id: HashMap<String, Ticket>,
    /// The ticket count at which `issue` next removes expired tickets. It doubles with the
    /// live count, so sweeping costs amortized constant time per ticket.
    sweep_threshold: usize,
}

struct Ticket {
    value: Bytes,
    expires_at: Instant,
}

impl InMemoryTicketStore {
    pub fn new() -> InMemoryTicketStore {
        InMemoryTicketStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tickets> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.tickets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl TicketStore for InMemoryTicketStore {
    /// Stores the ticket, replacing an unredeemed ticket with the same id.
    async fn issue(&self, ticket_id: &str, value: Bytes, ttl: Duration) -> Result<(), LogError> {
        let now = Instant::now();
        let mut tickets = self.lock();
        if tickets.by_id.len() >= tickets.sweep_threshold.max(MIN_SWEEP_THRESHOLD) {
            tickets.by_id.retain(|_, ticket| ticket.expires_at > now);
            tickets.sweep_threshold = tickets.by_id.len() * 2;
        }
        // A TTL too large for the clock means "never expires" in practice.
        let expires_at = now.checked_add(ttl).unwrap_or(now + FAR_FUTURE);
        let ticket = Ticket { value, expires_at };
        tickets.by_id.insert(ticket_id.to_owned(), ticket);
        Ok(())
    }

    async fn redeem(&self, ticket_id: &str) -> Result<Option<Bytes>, LogError> {
        let ticket = self.lock().by_id.remove(ticket_id);
        Ok(ticket
            .filter(|ticket| ticket.expires_at > Instant::now())
            .map(|ticket| ticket.value))
    }
}
