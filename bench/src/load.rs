//! The HTTP load. Each sender loops `POST /v1/messages` on its own keep-alive HTTP/1.1
//! connection, one request at a time. For responses that arrive inside the measured window it
//! records latency, status, and the `X-Event-Position` with the moment of arrival, from which
//! the projection lag is computed afterwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

use crate::setup::Sender;

/// Response header that carries the log position a command appended.
const EVENT_POSITION_HEADER: &str = "x-event-position";

/// Limit on one request; a send that takes longer counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed connection, so a dead server is not hammered in a tight loop.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The span in which results count. Senders start before it (the warmup) and stop issuing
/// requests at its end.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn contains(&self, moment: Instant) -> bool {
        self.start <= moment && moment < self.end
    }
}

/// One successful send: the position it appended and when its response arrived.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledged {
    pub position: u64,
    pub received_at: Instant,
}

/// The merged records of all senders inside the window.
pub struct LoadOutcome {
    /// Latency of successful sends, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed sends by status code, or by kind of transport error.
    pub errors: BTreeMap<String, u64>,
    pub acknowledged: Vec<Acknowledged>,
    /// Successful sends whose response had no readable `X-Event-Position`.
    pub missing_position: u64,
}

impl LoadOutcome {
    fn empty() -> LoadOutcome {
        LoadOutcome {
            latency: new_latency_histogram(),
            errors: BTreeMap::new(),
            acknowledged: Vec::new(),
            missing_position: 0,
        }
    }

    fn merge(&mut self, other: LoadOutcome) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds always add");
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        self.acknowledged.extend(other.acknowledged);
        self.missing_position += other.missing_position;
    }

    pub fn successful_sends(&self) -> u64 {
        self.latency.len()
    }
}

/// Returns a histogram of microseconds from 1 µs to 10 minutes at 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("the bounds are valid")
}

/// Runs every sender until the window ends and merges what they recorded.
pub async fn send_messages(
    base_url: String,
    senders: Vec<Sender>,
    content_bytes: usize,
    window: Window,
) -> anyhow::Result<LoadOutcome> {
    let url = format!("{base_url}/v1/messages");
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        // One client per sender gives each its own connection pool, so each sender keeps
        // exactly one connection and no sender waits for another's.
        let client = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let body = message_body(&sender, content_bytes);
        let authorization = HeaderValue::from_str(&format!("Bearer {}", sender.access_token))?;
        let url = url.clone();
        tasks.spawn(async move { run_sender(client, url, authorization, body, window).await });
    }
    let mut outcome = LoadOutcome::empty();
    while let Some(joined) = tasks.join_next().await {
        outcome.merge(joined?);
    }
    Ok(outcome)
}

/// Serializes the request body once per sender; every send of that sender reuses it.
fn message_body(sender: &Sender, content_bytes: usize) -> Bytes {
    let content: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(content_bytes)
        .map(char::from)
        .collect();
    let body = json!({
        "conversation_id": sender.conversation_id,
        "content": content,
        "message_type": "text",
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"))
}

async fn run_sender(
    client: reqwest::Client,
    url: String,
    authorization: HeaderValue,
    body: Bytes,
    window: Window,
) -> LoadOutcome {
    let mut outcome = LoadOutcome::empty();
    loop {
        let started = Instant::now();
        if started >= window.end {
            return outcome;
        }
        let sent = client
            .post(&url)
            .header(AUTHORIZATION, authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if window.contains(Instant::now()) {
                    *outcome
                        .errors
                        .entry(transport_error_kind(&error))
                        .or_default() += 1;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let status = response.status();
        let position = response
            .headers()
            .get(EVENT_POSITION_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        // Reading the body to its end lets the connection serve the next request.
        let body_read = response.bytes().await;
        let received_at = Instant::now();
        if !window.contains(received_at) {
            continue;
        }
        if let Err(error) = body_read {
            *outcome
                .errors
                .entry(transport_error_kind(&error))
                .or_default() += 1;
            continue;
        }
        if !status.is_success() {
            *outcome
                .errors
                .entry(format!("HTTP {}", status.as_u16()))
                .or_default() += 1;
            continue;
        }
        let micros = received_at.duration_since(started).as_micros();
        outcome
            .latency
            .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
        match position {
            Some(position) => outcome.acknowledged.push(Acknowledged {
                position,
                received_at,
            }),
            None => outcome.missing_position += 1,
        }
    }
}

fn transport_error_kind(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    };
    format!("transport: {kind}")
}
