//! The projector runtime on the production backends: events from a JetStream stream of the
//! test's own, read models in a PostgreSQL database of the test's own.

mod common;

use std::sync::Arc;

use secureconnect_events::EventLog;
use secureconnect_nats::{JetStreamBackend, JetStreamConfig};
use secureconnect_projections::{ProjectionName, ProjectorOptions, ProjectorRuntime};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{
    Backend, TestConversation, TestDatabase, bounded, register, time, user_registered,
    wait_for_checkpoint,
};

/// A JetStream stream and buckets with random names, deleted when the value is dropped.
struct TestStream {
    backend: JetStreamBackend,
}

impl TestStream {
    async fn create() -> TestStream {
        let suffix = Uuid::new_v4().simple().to_string();
        let config = JetStreamConfig {
            stream_name: format!("SC_PROJECTIONS_{suffix}"),
            subject_prefix: format!("sc_projections_{suffix}.events"),
            ephemeral_prefix: format!("sc_projections_{suffix}.ephemeral"),
            ..JetStreamConfig::default()
        };
        let backend = bounded(
            "connecting to NATS",
            JetStreamBackend::connect(config.clone()),
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "NATS with JetStream is required at {} for this test: {error}",
                config.url
            )
        });
        TestStream { backend }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // The test's runtime may be unable to run tasks while Drop blocks, so the stream is
        // deleted over a connection of its own, on a runtime of its own.
        let config = self.backend.config().clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failed to start a runtime to delete the test stream");
            runtime.block_on(async move {
                let backend = JetStreamBackend::connect(config).await?;
                backend.delete_all().await
            })
        })
        .join();
        let failure = match deleted {
            Ok(Ok(())) => return,
            Ok(Err(error)) => format!("failed to delete the test stream: {error}"),
            Err(_) => "deleting the test stream panicked".to_owned(),
        };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_events_reach_postgres_read_models() {
    let stream = TestStream::create().await;
    let log: Arc<dyn EventLog> = Arc::new(stream.backend.event_log());
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.open_store().await;

    let alice = user_registered("alice");
    let bob = user_registered("bob");
    register(log.as_ref(), &alice).await;
    register(log.as_ref(), &bob).await;
    let mut conversation =
        TestConversation::create(log.as_ref(), alice.user_id, &[bob.user_id], time(0)).await;
    let mut sent = Vec::new();
    let mut last = 0;
    for round in 0..4 {
        let messages: Vec<_> = (0..3)
            .map(|index| {
                conversation.message(bob.user_id, &format!("{round}-{index}"), time(round + 1))
            })
            .collect();
        last = conversation.send(log.as_ref(), &messages).await;
        sent.extend(messages);
    }

    // Batches of two events must still take whole three-event commits.
    let options = ProjectorOptions {
        batch_size: 2,
        ..ProjectorOptions::default()
    };
    let runtime = ProjectorRuntime::new(Arc::clone(&log), store.clone(), options);
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let runtime = runtime.clone();
        let cancel = cancel.clone();
        async move { runtime.run(&ProjectionName::ALL, cancel).await }
    });
    let positions = bounded("starting the position watches", store.positions())
        .await
        .expect("failed to start the position watches");
    bounded(
        "waiting for the projections",
        positions.wait_for(&ProjectionName::ALL, last, common::TEST_TIMEOUT),
    )
    .await
    .expect("the projections did not reach the last commit");
    for name in ProjectionName::ALL {
        wait_for_checkpoint(&store, name, last).await;
    }
    cancel.cancel();
    bounded("projectors stopping", task)
        .await
        .expect("the projector task panicked")
        .expect("the projections failed");

    let read_models = store.read_models();
    let stored = read_models
        .user(bob.user_id)
        .await
        .unwrap()
        .expect("bob has no row");
    assert_eq!(stored.username, "bob");
    let view = read_models
        .conversation_for_member(conversation.conversation_id, bob.user_id)
        .await
        .unwrap()
        .expect("bob is a member");
    assert_eq!(view.participants.len(), 2);
    assert_eq!(view.updated_at, time(4));
    let page = read_models
        .messages_page(conversation.conversation_id, None, 100)
        .await
        .unwrap();
    let received: Vec<Uuid> = page
        .messages
        .iter()
        .map(|message| message.message_id)
        .collect();
    let expected: Vec<Uuid> = sent
        .iter()
        .rev()
        .map(|message| message.message_id)
        .collect();
    assert_eq!(received, expected);

    let statuses = runtime.status().await.expect("failed to read the status");
    for status in statuses {
        assert_eq!(status.position, last);
        assert_eq!(status.head_position, last);
        assert_eq!(status.lag_events, 0);
    }
}
