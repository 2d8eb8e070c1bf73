//! Helpers shared by the projection tests: a fresh read-model store per test on PostgreSQL or
//! SQLite, a fresh embedded event log, commits built from domain events, and waits bounded by
//! a timeout.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secureconnect_events::domain::{
    ConversationCreated, ConversationEvent, ConversationType, MessageSent, MessageType,
    Participant, ParticipantRole, RecordedEvent, UserEvent, UserRegistered,
};
use secureconnect_events::embedded::EmbeddedLog;
use secureconnect_events::{
    AggregateType, Appended, Commit, CommitMetadata, EventLog, NewEvent, StreamId, StreamVersion,
};
use secureconnect_projections::{ProjectionName, ReadModelStore, StoreOptions};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The server every PostgreSQL test creates its database on.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// The maximum time any single wait in a test may take before the test fails.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test with `what` when it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {TEST_TIMEOUT:?}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database of a test's own, removed when the value is dropped, also on failure.
pub enum TestDatabase {
    Postgres(PostgresDatabase),
    Sqlite { directory: tempfile::TempDir },
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => TestDatabase::Postgres(PostgresDatabase::create().await),
            Backend::Sqlite => TestDatabase::Sqlite {
                directory: tempfile::tempdir().expect("failed to create a temporary folder"),
            },
        }
    }

    /// Opens a new store on this database, with a pool of its own, as another process would.
    pub async fn open_store(&self) -> ReadModelStore {
        match self {
            TestDatabase::Postgres(database) => bounded(
                "connecting to the test database",
                ReadModelStore::connect_postgres(&database.url(), StoreOptions::default()),
            )
            .await
            .expect("failed to connect to the test database"),
            TestDatabase::Sqlite { directory } => bounded(
                "opening the SQLite read models",
                ReadModelStore::sqlite(
                    directory.path().join("read-models.sqlite"),
                    StoreOptions::default(),
                ),
            )
            .await
            .expect("failed to open the SQLite read models"),
        }
    }
}

/// A PostgreSQL database with a random name, migrated, and dropped with `WITH (FORCE)` when
/// the value is dropped.
pub struct PostgresDatabase {
    name: String,
}

impl PostgresDatabase {
    pub async fn create() -> PostgresDatabase {
        let name = format!("sc_projections_{}", Uuid::new_v4().simple());
        let mut admin = bounded(
            "connecting to PostgreSQL",
            PgConnection::connect(POSTGRES_URL),
        )
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL is required at {POSTGRES_URL} for this test: {error}")
        });
        bounded(
            "creating the test database",
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin),
        )
        .await
        .expect("failed to create the test database");
        let database = PostgresDatabase { name };

        let pool = bounded(
            "connecting to the test database",
            PgPoolOptions::new()
                .max_connections(1)
                .connect(&database.url()),
        )
        .await
        .expect("failed to connect to the test database");
        bounded(
            "migrating the test database",
            secureconnect_projections::migrate_postgres(&pool),
        )
        .await
        .expect("failed to migrate the test database");
        pool.close().await;
        database
    }

    pub fn url(&self) -> String {
        format!("{POSTGRES_URL}/{}", self.name)
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs outside any async context that could be blocked on, so the statement runs
        // on a runtime of its own in a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failed to start a runtime to drop the test database");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(POSTGRES_URL).await?;
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut admin)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        let failure = match dropped {
            Ok(Ok(())) => return,
            Ok(Err(error)) => format!("failed to drop test database {}: {error}", self.name),
            Err(_) => format!("dropping test database {} panicked", self.name),
        };
        // A second panic while the test is already failing would abort the whole run.
        if std::thread::panicking() {
            #[allow(clippy::print_stderr, reason = "the test is already panicking")]
            {
                eprintln!("{failure}");
            }
        } else {
            panic!("{failure}");
        }
    }
}

/// An embedded event log in a temporary folder of its own.
pub struct TestLog {
    pub log: Arc<dyn EventLog>,
    _directory: tempfile::TempDir,
}

impl TestLog {
    pub async fn embedded() -> TestLog {
        let directory = tempfile::tempdir().expect("failed to create a temporary folder");
        let path: PathBuf = directory.path().join("events.sqlite");
        let log = bounded("opening the embedded log", EmbeddedLog::open(&path))
            .await
            .expect("failed to open the embedded log");
        TestLog {
            log: Arc::new(log),
            _directory: directory,
        }
    }
}

/// Appends `events` as one commit to `stream`, which must be at `expected`.
pub async fn append(
    log: &dyn EventLog,
    stream: StreamId,
    expected: StreamVersion,
    events: Vec<NewEvent>,
) -> Appended {
    let commit = Commit {
        stream,
        expected,
        commit_id: Uuid::new_v4(),
        recorded_at: Utc::now(),
        metadata: CommitMetadata {
            actor: None,
            correlation_id: Uuid::new_v4(),
            causation_id: None,
        },
        events,
    };
    bounded("appending a commit", log.append(commit))
        .await
        .expect("failed to append a commit")
}

pub fn user_registered(name: &str) -> UserRegistered {
    UserRegistered {
        user_id: Uuid::new_v4(),
        email: format!("{name}@example.com"),
        username: name.to_owned(),
        display_name: format!("{name} display"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        registered_at: time(0),
    }
}

pub async fn register(log: &dyn EventLog, user: &UserRegistered) -> Appended {
    let event = UserEvent::UserRegistered(user.clone()).to_new_event();
    append(
        log,
        StreamId::for_uuid(AggregateType::User, user.user_id),
        StreamVersion::EMPTY,
        vec![event],
    )
    .await
}

/// A conversation stream and the version it has reached in this test.
pub struct TestConversation {
    pub conversation_id: Uuid,
    pub created: ConversationCreated,
    pub version: StreamVersion,
}

impl TestConversation {
    /// Creates a group conversation of `creator` (admin) and `members`.
    pub async fn create(
        log: &dyn EventLog,
        creator: Uuid,
        members: &[Uuid],
        created_at: DateTime<Utc>,
    ) -> TestConversation {
        let conversation_id = Uuid::new_v4();
        let mut participants = vec![Participant {
            user_id: creator,
            role: ParticipantRole::Admin,
        }];
        participants.extend(members.iter().map(|&user_id| Participant {
            user_id,
            role: ParticipantRole::Member,
        }));
        let created = ConversationCreated {
            conversation_id,
            conversation_type: ConversationType::Group,
            title: format!("conversation {conversation_id}"),
            created_by: creator,
            participants,
            is_e2ee_enabled: true,
            created_at,
        };
        let appended = append(
            log,
            StreamId::for_uuid(AggregateType::Conversation, conversation_id),
            StreamVersion::EMPTY,
            vec![ConversationEvent::ConversationCreated(created.clone()).to_new_event()],
        )
        .await;
        TestConversation {
            conversation_id,
            created,
            version: appended.version,
        }
    }

    pub fn message(&self, sender_id: Uuid, content: &str, sent_at: DateTime<Utc>) -> MessageSent {
        let mut metadata = serde_json::Map::new();
        metadata.insert("client".to_owned(), serde_json::json!("test"));
        metadata.insert("length".to_owned(), serde_json::json!(content.len()));
        MessageSent {
            message_id: Uuid::new_v4(),
            conversation_id: self.conversation_id,
            sender_id,
            content: content.to_owned(),
            is_encrypted: false,
            message_type: MessageType::Text,
            metadata,
            sent_at,
        }
    }

    /// Appends `messages` as one commit and returns its position.
    pub async fn send(&mut self, log: &dyn EventLog, messages: &[MessageSent]) -> u64 {
        let events = messages
            .iter()
            .map(|message| ConversationEvent::MessageSent(message.clone()).to_new_event())
            .collect();
        let appended = append(
            log,
            StreamId::for_uuid(AggregateType::Conversation, self.conversation_id),
            self.version,
            events,
        )
        .await;
        self.version = appended.version;
        appended.position
    }
}

/// Returns a fixed time plus `seconds`, so that tests can compare stored times exactly.
pub fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + seconds, 123_456_000).expect("valid test time")
}

/// Waits until `name`'s checkpoint reaches `position`.
pub async fn wait_for_checkpoint(store: &ReadModelStore, name: ProjectionName, position: u64) {
    bounded(
        &format!("projection {name} reaching position {position}"),
        async {
            loop {
                let checkpoint = store
                    .checkpoint(name)
                    .await
                    .expect("failed to read a checkpoint");
                if checkpoint.position >= position {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await
}

/// Declares `$test` as two tests, one per read-model backend, each calling
/// `$test::run(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test($crate::common::Backend::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::common::Backend::Sqlite).await;
            }
        }
    };
}
