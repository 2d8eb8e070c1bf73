//! The raw JetStream append rate, as a ceiling for the HTTP figures. The same number of
//! concurrent appenders publish straight to a fresh stream shaped like the server's event
//! stream. Each publishes to its own subject `<prefix>.conversation.<id>` with `Nats-Msg-Id`
//! and `Nats-Expected-Last-Subject-Sequence`, as the server's log does for every commit, and
//! awaits the acknowledgement before the next publish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;
use uuid::Uuid;

use crate::environment::Names;
use crate::load::{Window, new_latency_histogram};
use crate::options::Options;
use crate::usage::{ClockTicks, CpuSnapshot, CpuSplit};

/// The server's own duplicate window, so the stream does the same deduplication work.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub struct RawAppendOutcome {
    /// Acknowledgement latency of successful appends, in microseconds.
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub body_bytes: usize,
    pub body_source: BodySource,
    pub cpu: CpuSplit,
}

/// The body every raw append publishes.
pub struct CommitBody {
    pub bytes: Bytes,
    pub source: BodySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySource {
    /// A copy of the last commit the server stored for one sender's conversation.
    ServerCommit,
    /// Made up in the server's commit format, because no stored commit could be read.
    MadeUp,
}

impl BodySource {
    pub fn as_str(self) -> &'static str {
        match self {
            BodySource::ServerCommit => "a commit the server stored",
            BodySource::MadeUp => "made up in the commit format",
        }
    }
}

/// Returns the last commit the server stored on `subject`, so the raw appends publish bodies
/// of the same size and shape, or a made-up one in the same format if it cannot be read.
pub async fn commit_body(
    nats_url: &str,
    names: &Names,
    subject: &str,
    content_bytes: usize,
) -> CommitBody {
    match read_stored_commit(nats_url, names, subject).await {
        Some(bytes) => CommitBody {
            bytes,
            source: BodySource::ServerCommit,
        },
        None => CommitBody {
            bytes: made_up_commit(content_bytes),
            source: BodySource::MadeUp,
        },
    }
}

async fn read_stored_commit(nats_url: &str, names: &Names, subject: &str) -> Option<Bytes> {
    let client = async_nats::connect(nats_url).await.ok()?;
    let context = jetstream::new(client.clone());
    let stream = context.get_stream(&names.stream).await.ok()?;
    let message = stream.direct_get_last_for_subject(subject).await.ok();
    client.drain().await.ok();
    Some(message?.payload)
}

fn made_up_commit(content_bytes: usize) -> Bytes {
    let body = json!({
        "metadata": {
            "actor": Uuid::new_v4(),
            "correlation_id": Uuid::new_v4(),
            "causation_id": null,
        },
        "recorded_at": chrono::Utc::now(),
        "first_sequence": 2,
        "events": [{
            "event_id": Uuid::new_v4(),
            "event_type": "MessageSent",
            "schema_version": 1,
            "payload": {
                "message_id": Uuid::new_v4(),
                "conversation_id": Uuid::new_v4(),
                "sender_id": Uuid::new_v4(),
                "content": "x".repeat(content_bytes),
                "is_encrypted": false,
                "message_type": "text",
                "metadata": {},
                "sent_at": chrono::Utc::now(),
            },
        }],
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"))
}

/// Creates the raw stream, runs `appenders` concurrent appenders through warmup and window,
/// and returns what arrived inside the window. The caller deletes the stream.
pub async fn measure_raw_appends(
    options: &Options,
    names: &Names,
    body: CommitBody,
    ticks: ClockTicks,
) -> anyhow::Result<RawAppendOutcome> {
    let nats_url = options.nats_url.as_str();
    // One connection shared by all appenders, as the server shares one for all commits.
    let client = async_nats::ConnectOptions::new()
        .name("secureconnect-bench raw appends")
        .connect(nats_url)
        .await
        .with_context(|| format!("failed to connect to {nats_url}"))?;
    let context = jetstream::new(client.clone());
    context
        .create_stream(raw_stream_config(names))
        .await
        .with_context(|| format!("failed to create stream {}", names.raw_stream))?;

    let start = Instant::now() + options.warmup();
    let window = Window {
        start,
        end: start + options.duration(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.senders {
        let subject = format!(
            "{}.conversation.{}",
            names.raw_subject_prefix,
            Uuid::new_v4()
        );
        tasks.spawn(run_appender(
            context.clone(),
            subject,
            body.bytes.clone(),
            window,
        ));
    }
    tokio::time::sleep_until(window.start.into()).await;
    let before = CpuSnapshot::take(None)?;
    tokio::time::sleep_until(window.end.into()).await;
    let after = CpuSnapshot::take(None)?;

    let mut latency = new_latency_histogram();
    let mut errors = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (appender_latency, appender_errors) = joined?;
        latency
            .add(&appender_latency)
            .expect("histograms with the same bounds always add");
        for (kind, count) in appender_errors {
            *errors.entry(kind).or_default() += count;
        }
    }
    client.drain().await.ok();
    Ok(RawAppendOutcome {
        latency,
        errors,
        body_bytes: body.bytes.len(),
        body_source: body.source,
        cpu: CpuSplit::between(&before, &after, ticks),
    })
}

/// Builds the settings of the server's event stream: file storage, nothing ever discarded,
/// deletes and purges denied, direct gets allowed.
fn raw_stream_config(names: &Names) -> stream::Config {
    stream::Config {
        name: names.raw_stream.clone(),
        description: Some("secureconnect-bench raw appends; deleted after the run".to_owned()),
        subjects: vec![format!("{}.>", names.raw_subject_prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    }
}

async fn run_appender(
    context: jetstream::Context,
    subject: String,
    body: Bytes,
    window: Window,
) -> (Histogram<u64>, BTreeMap<String, u64>) {
    let mut latency = new_latency_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_sequence = 0;
    loop {
        let started = Instant::now();
        if started >= window.end {
            return (latency, errors);
        }
        let publish = PublishMessage::build()
            .payload(body.clone())
            .message_id(Uuid::new_v4().to_string())
            .expected_last_subject_sequence(last_sequence);
        let acknowledged = match context.send_publish(subject.clone(), publish).await {
            Ok(acknowledgement) => acknowledgement.await,
            Err(error) => Err(error),
        };
        let received_at = Instant::now();
        match acknowledged {
            Ok(ack) => {
                last_sequence = ack.sequence;
                if window.contains(received_at) {
                    let micros = received_at.duration_since(started).as_micros();
                    latency.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                }
            }
            Err(error) => {
                if window.contains(received_at) {
                    *errors.entry(error.kind().to_string()).or_default() += 1;
                }
            }
        }
    }
}
