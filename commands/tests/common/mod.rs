//! Helpers for the bus and process tests. Each test gets a fresh event log: an embedded log in
//! a temporary folder, or a JetStream stream with random names. The helpers build buses over
//! it, wrap it in a log that records reads and can lose append acknowledgements, and build
//! common commands.
//!
//! Each scenario runs on both backends through [`on_both_backends!`].

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use secureconnect_commands::conversation::{Conversation, ConversationCommand};
use secureconnect_commands::input::{
    ConversationTitle, DisplayName, Email, MessageContent, MessageMetadata, Username,
};
use secureconnect_commands::registration::{NewRegistration, register_user};
use secureconnect_commands::{BusOptions, CommandBus};
use secureconnect_events::domain::{ConversationType, MessageType};
use secureconnect_events::embedded::EmbeddedLog;
use secureconnect_events::{
    AggregateId, AppendError, Appended, Commit, CommitMetadata, EventEnvelope, EventFeed, EventLog,
    FeedFilter, FeedStart, LogError, SnapshotStore, StreamId, StreamVersion,
};
use secureconnect_nats::{JetStreamBackend, JetStreamConfig};
use tempfile::TempDir;
use uuid::Uuid;

/// The NATS server the JetStream variants use; it must run with JetStream enabled.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long any single awaited step of a test may take before the test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Awaits `future`, failing the test when it takes longer than [`STEP_TIMEOUT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .expect("a test step timed out")
}

/// Defines a module named after a scenario with one test per backend, `embedded` and
/// `jetstream`, each calling `scenario(&TestStore)`. Pass `multi_thread` for scenarios that
/// need two worker threads.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn embedded() {
                super::$scenario(&super::TestStore::embedded().await).await;
            }

            #[tokio::test]
            async fn jetstream() {
                super::$scenario(&super::TestStore::jetstream().await).await;
            }
        }
    };
    ($scenario:ident, multi_thread) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(&super::TestStore::embedded().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn jetstream() {
                super::$scenario(&super::TestStore::jetstream().await).await;
            }
        }
    };
}

/// A fresh event log and snapshot store. Dropping it removes what it created (the temporary
/// folder, or the JetStream stream and buckets), also when the test panics.
pub struct TestStore {
    pub log: Arc<dyn EventLog>,
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Declared last so that it runs after the log's handles are dropped.
    _cleanup: Cleanup,
}

enum Cleanup {
    Folder(TempDir),
    JetStream(JetStreamCleanup),
}

impl TestStore {
    pub async fn embedded() -> TestStore {
        let folder = tempfile::tempdir().expect("failed to create a temporary folder");
        let log = within(EmbeddedLog::open(&folder.path().join("events.sqlite")))
            .await
            .expect("failed to open the embedded log");
        TestStore {
            snapshots: Arc::new(log.snapshot_store()),
            log: Arc::new(log),
            _cleanup: Cleanup::Folder(folder),
        }
    }

    /// Connects to NATS on a stream and buckets with random names, failing the test loudly
    /// when NATS is missing.
    pub async fn jetstream() -> TestStore {
        let id = Uuid::new_v4().simple().to_string();
        let config = JetStreamConfig {
            url: NATS_URL.to_owned(),
            stream_name: format!("SC_COMMANDS_TEST_{id}"),
            subject_prefix: format!("sccommands_{id}.events"),
            ephemeral_prefix: format!("sccommands_{id}.ephemeral"),
            replicas: 1,
            request_timeout: Duration::from_secs(5),
        };
        let cleanup = JetStreamCleanup {
            config: config.clone(),
        };
        let backend = connect_jetstream(config).await;
        TestStore {
            log: Arc::new(backend.event_log()),
            snapshots: Arc::new(backend.snapshot_store()),
            _cleanup: Cleanup::JetStream(cleanup),
        }
    }

    /// Creates a bus over this store, as one API node would.
    pub fn bus(&self) -> Arc<CommandBus> {
        self.bus_with(BusOptions::default())
    }

    pub fn bus_with(&self, options: BusOptions) -> Arc<CommandBus> {
        Arc::new(CommandBus::new(
            Arc::clone(&self.log),
            Arc::clone(&self.snapshots),
            options,
        ))
    }

    /// Creates a bus whose log is wrapped in a [`RecordingLog`].
    pub fn recording_bus(&self, fault: AppendFault) -> (Arc<RecordingLog>, CommandBus) {
        let recording = RecordingLog::new(Arc::clone(&self.log), fault);
        let bus = CommandBus::new(
            recording.clone(),
            Arc::clone(&self.snapshots),
            BusOptions::default(),
        );
        (recording, bus)
    }

    pub async fn read_stream(&self, stream: &StreamId) -> Vec<EventEnvelope> {
        let (events, _) = within(self.log.read_stream(stream, StreamVersion::EMPTY))
            .await
            .expect("failed to read a stream");
        events
    }
}

/// Connects a JetStream backend.
///
/// NOTE: nats-server 2.9.10 removes an account's storage directory when its last stream is
/// deleted, and a stream created at that moment fails with "error creating store for stream"
/// (error code 10049). Tests delete and create streams in parallel, so that one error is
/// retried a few times. Any other error fails the test at once.
async fn connect_jetstream(config: JetStreamConfig) -> JetStreamBackend {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        match within(JetStreamBackend::connect(config.clone())).await {
            Ok(backend) => return backend,
            Err(error) if attempt < ATTEMPTS && error.to_string().contains("10049") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!(
                "failed to connect to NATS with JetStream at {NATS_URL}: {error}. Start \
                 nats-server with JetStream enabled (nats-server -js)"
            ),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Deletes a test's JetStream stream and buckets when dropped.
struct JetStreamCleanup {
    config: JetStreamConfig,
}

impl Drop for JetStreamCleanup {
    /// Deletes on a thread of its own with its own runtime, because `Drop` cannot await and
    /// the test's runtime may be single-threaded and blocked here.
    #[allow(
        clippy::print_stderr,
        reason = "a failed cleanup must not panic inside Drop"
    )]
    fn drop(&mut self) {
        let config = self.config.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failed to build a cleanup runtime");
            runtime.block_on(async {
                tokio::time::timeout(STEP_TIMEOUT, async {
                    let backend = JetStreamBackend::connect(config).await?;
                    backend.delete_all().await
                })
                .await
            })
        })
        .join();
        match outcome {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("test cleanup failed: {error}"),
            Ok(Err(_)) => eprintln!("test cleanup timed out after {STEP_TIMEOUT:?}"),
            Err(_) => eprintln!("test cleanup panicked"),
        }
    }
}

/// The behavior of [`RecordingLog`] on appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFault {
    None,
    /// Stores the first append, then reports the log unavailable as if the acknowledgement
    /// was lost. Later appends pass through.
    LoseFirstAcknowledgement,
    /// Reports every append unavailable without storing it.
    AlwaysUnavailable,
}

/// One `read_stream` call seen by [`RecordingLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    pub stream: StreamId,
    pub after: StreamVersion,
    pub returned_events: usize,
}

/// A wrapper around a real log that records stream reads and append commit ids, and can
/// inject an append failure. Everything else goes to the real log.
pub struct RecordingLog {
    inner: Arc<dyn EventLog>,
    fault: AppendFault,
    pub reads: Mutex<Vec<StreamRead>>,
    pub append_commit_ids: Mutex<Vec<Uuid>>,
}

impl RecordingLog {
    pub fn new(inner: Arc<dyn EventLog>, fault: AppendFault) -> Arc<RecordingLog> {
        Arc::new(RecordingLog {
            inner,
            fault,
            reads: Mutex::new(Vec::new()),
            append_commit_ids: Mutex::new(Vec::new()),
        })
    }

    pub fn reads(&self) -> Vec<StreamRead> {
        self.reads.lock().unwrap().clone()
    }

    pub fn append_commit_ids(&self) -> Vec<Uuid> {
        self.append_commit_ids.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventLog for RecordingLog {
    async fn append(&self, commit: Commit) -> Result<Appended, AppendError> {
        let attempt = {
            let mut ids = self.append_commit_ids.lock().unwrap();
            ids.push(commit.commit_id);
            ids.len()
        };
        match self.fault {
            AppendFault::None => self.inner.append(commit).await,
            AppendFault::LoseFirstAcknowledgement => {
                let result = self.inner.append(commit).await;
                if attempt == 1 {
                    result.expect("the first append is stored");
                    Err(AppendError::Log(LogError::Unavailable(
                        "injected: acknowledgement lost".to_owned(),
                    )))
                } else {
                    result
                }
            }
            AppendFault::AlwaysUnavailable => Err(AppendError::Log(LogError::Unavailable(
                "injected: log unreachable".to_owned(),
            ))),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
    ) -> Result<(Vec<EventEnvelope>, StreamVersion), LogError> {
        let result = self.inner.read_stream(stream, after).await;
        if let Ok((events, _)) = &result {
            self.reads.lock().unwrap().push(StreamRead {
                stream: stream.clone(),
                after,
                returned_events: events.len(),
            });
        }
        result
    }

    async fn read_all(
        &self,
        after_position: u64,
        max_events: usize,
    ) -> Result<Vec<EventEnvelope>, LogError> {
        self.inner.read_all(after_position, max_events).await
    }

    async fn feed(&self, start: FeedStart, filter: FeedFilter) -> Result<EventFeed, LogError> {
        self.inner.feed(start, filter).await
    }

    async fn head_position(&self) -> Result<u64, LogError> {
        self.inner.head_position().await
    }

    fn backend_name(&self) -> &'static str {
        "recording"
    }
}

pub fn metadata() -> CommitMetadata {
    CommitMetadata {
        actor: None,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

pub fn registration(email: &str, username: &str, now: DateTime<Utc>) -> NewRegistration {
    NewRegistration {
        email: Email::parse(email).unwrap(),
        username: Username::parse(username).unwrap(),
        display_name: DisplayName::parse(username).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        now,
    }
}

/// Registers a user with a unique email address and username, and returns its id.
pub async fn registered_user(bus: &CommandBus) -> Uuid {
    let suffix = Uuid::new_v4().simple().to_string();
    let username = format!("user_{}", &suffix[..12]);
    let email = format!("{username}@example.com");
    within(register_user(
        bus,
        registration(&email, &username, Utc::now()),
        metadata(),
    ))
    .await
    .expect("registration failed")
    .user_id
}

pub fn create_conversation(
    conversation_id: Uuid,
    creator_id: Uuid,
    member_id: Uuid,
) -> ConversationCommand {
    ConversationCommand::Create {
        conversation_id,
        creator_id,
        conversation_type: ConversationType::Direct,
        title: ConversationTitle::parse("Test").unwrap(),
        participant_ids: vec![member_id],
        is_e2ee_enabled: true,
        now: Utc::now(),
    }
}

pub fn send_message(message_id: Uuid, sender_id: Uuid, text: &str) -> ConversationCommand {
    ConversationCommand::SendMessage {
        message_id,
        sender_id,
        content: MessageContent::parse(text.to_owned()).unwrap(),
        is_encrypted: false,
        message_type: MessageType::Text,
        metadata: MessageMetadata::default(),
        now: Utc::now(),
    }
}

/// Creates a direct conversation between two fresh user ids and returns its ids. The users
/// are not registered: the bus does not check that, only `open_conversation` does.
pub async fn new_conversation(bus: &CommandBus) -> (Uuid, Uuid, Uuid) {
    let conversation_id = Uuid::new_v4();
    let creator_id = Uuid::new_v4();
    let member_id = Uuid::new_v4();
    within(bus.execute::<Conversation>(
        AggregateId::from_uuid(conversation_id),
        create_conversation(conversation_id, creator_id, member_id),
        metadata(),
    ))
    .await
    .expect("creating the conversation failed");
    (conversation_id, creator_id, member_id)
}
