//! The projector runtime and the read models against real databases: each test runs on
//! PostgreSQL and on SQLite, each in a database or file of its own, with events appended to a
//! fresh embedded log.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secureconnect_events::domain::{
    ClaimEvent, KeyClaimed, RecordedEvent, RegistrationAbandoned, UserEvent,
};
use secureconnect_events::{AggregateType, NewEvent, StreamId, StreamVersion};
use secureconnect_projections::{
    MessageCursor, PendingBatch, ProjectionName, ProjectorOptions, ProjectorRuntime,
    ReadModelStore, WaitTimedOut,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{
    Backend, TestConversation, TestDatabase, TestLog, append, bounded, register, time,
    user_registered, wait_for_checkpoint,
};

/// A runtime running `names` in the background until the value is dropped or stopped.
struct RunningProjectors {
    cancel: CancellationToken,
    task:
        Option<tokio::task::JoinHandle<Result<(), secureconnect_projections::ProjectionsStopped>>>,
}

impl RunningProjectors {
    fn start(
        log: &TestLog,
        store: &ReadModelStore,
        names: &[ProjectionName],
        options: ProjectorOptions,
    ) -> RunningProjectors {
        let runtime = ProjectorRuntime::new(Arc::clone(&log.log), store.clone(), options);
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            let names = names.to_vec();
            async move { runtime.run(&names, cancel).await }
        });
        RunningProjectors {
            cancel,
            task: Some(task),
        }
    }

    /// Cancels the projectors and waits until they have returned.
    async fn stop(mut self) -> Result<(), secureconnect_projections::ProjectionsStopped> {
        self.cancel.cancel();
        let task = self.task.take().expect("projectors stopped twice");
        bounded("projectors stopping", task)
            .await
            .expect("the projector task panicked")
    }
}

impl Drop for RunningProjectors {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn count_rows(store: &ReadModelStore, database: &TestDatabase, table: &str) -> i64 {
    let _ = store;
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match database {
        TestDatabase::Postgres(database) => {
            let pool = sqlx::PgPool::connect(&database.url())
                .await
                .expect("failed to connect to the test database");
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .expect("failed to count rows");
            pool.close().await;
            count
        }
        TestDatabase::Sqlite { directory } => {
            let path = directory.path().join("read-models.sqlite");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("failed to open the SQLite read models");
            let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .expect("failed to count rows");
            pool.close().await;
            count
        }
    }
}

async fn users_projection_writes_registered_users(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;

    let alice = user_registered("alice");
    let bob = user_registered("bob");
    register(log.log.as_ref(), &alice).await;
    // Claims and abandoned registrations leave no row.
    let abandoned_id = Uuid::new_v4();
    append(
        log.log.as_ref(),
        StreamId::for_uuid(AggregateType::UsernameClaim, Uuid::new_v4()),
        StreamVersion::EMPTY,
        vec![
            ClaimEvent::KeyClaimed(KeyClaimed {
                owner_id: abandoned_id,
                claimed_at: time(1),
                taken_over_from: None,
            })
            .to_new_event(),
        ],
    )
    .await;
    append(
        log.log.as_ref(),
        StreamId::for_uuid(AggregateType::User, abandoned_id),
        StreamVersion::EMPTY,
        vec![
            UserEvent::RegistrationAbandoned(RegistrationAbandoned {
                user_id: abandoned_id,
                abandoned_at: time(2),
            })
            .to_new_event(),
        ],
    )
    .await;
    let last = register(log.log.as_ref(), &bob).await.position;

    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Users],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Users, last).await;
    projectors
        .stop()
        .await
        .expect("the users projection failed");

    let read_models = store.read_models();
    let stored = read_models
        .user(alice.user_id)
        .await
        .expect("failed to read a user")
        .expect("alice has no row");
    assert_eq!(stored.user_id, alice.user_id);
    assert_eq!(stored.email, alice.email);
    assert_eq!(stored.username, alice.username);
    assert_eq!(stored.display_name, alice.display_name);
    assert_eq!(stored.avatar_url, None);
    assert_eq!(stored.status, "offline");
    assert_eq!(stored.created_at, alice.registered_at);
    assert_eq!(stored.updated_at, alice.registered_at);
    assert!(read_models.user(bob.user_id).await.unwrap().is_some());
    assert_eq!(read_models.user(abandoned_id).await.unwrap(), None);
    assert_eq!(count_rows(&store, &database, "users").await, 2);
}
on_both_backends!(users_projection_writes_registered_users);

async fn conversations_projection_tracks_members_and_activity(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let (alice, bob, carol, outsider) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );

    let mut older = TestConversation::create(log.log.as_ref(), alice, &[bob], time(0)).await;
    let mut newer =
        TestConversation::create(log.log.as_ref(), alice, &[bob, carol], time(10)).await;
    // Messages move `updated_at` to the newest message, so `older` ends up most recent.
    newer
        .send(log.log.as_ref(), &[newer.message(bob, "hello", time(20))])
        .await;
    let last = older
        .send(
            log.log.as_ref(),
            &[
                older.message(alice, "first", time(30)),
                older.message(bob, "second", time(40)),
            ],
        )
        .await;

    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Conversations],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Conversations, last).await;
    projectors
        .stop()
        .await
        .expect("the conversations projection failed");

    let read_models = store.read_models();
    let view = read_models
        .conversation_for_member(newer.conversation_id, carol)
        .await
        .expect("failed to read a conversation")
        .expect("carol is a member");
    assert_eq!(view.conversation_id, newer.conversation_id);
    assert_eq!(view.conversation_type, "group");
    assert_eq!(view.title, newer.created.title);
    assert_eq!(view.created_by, alice);
    assert!(view.is_e2ee_enabled);
    assert_eq!(view.created_at, time(10));
    assert_eq!(view.updated_at, time(20));
    let mut participants: Vec<(Uuid, String)> = view
        .participants
        .iter()
        .map(|participant| (participant.user_id, participant.role.clone()))
        .collect();
    participants.sort();
    let mut expected = vec![
        (alice, "admin".to_owned()),
        (bob, "member".to_owned()),
        (carol, "member".to_owned()),
    ];
    expected.sort();
    assert_eq!(participants, expected);
    assert!(
        view.participants
            .iter()
            .all(|participant| participant.joined_at == time(10))
    );

    let none = read_models
        .conversation_for_member(newer.conversation_id, outsider)
        .await
        .expect("failed to read a conversation");
    assert_eq!(none, None);
    let none = read_models
        .conversation_for_member(older.conversation_id, carol)
        .await
        .expect("failed to read a conversation");
    assert_eq!(none, None);

    let of_bob = read_models
        .conversations_of(bob, 10, 0)
        .await
        .expect("failed to list conversations");
    let ids: Vec<Uuid> = of_bob.iter().map(|view| view.conversation_id).collect();
    assert_eq!(ids, vec![older.conversation_id, newer.conversation_id]);
    assert_eq!(of_bob[0].updated_at, time(40));
    assert_eq!(of_bob[0].participants.len(), 2);
    assert_eq!(of_bob[1].participants.len(), 3);

    let second_page = read_models.conversations_of(bob, 1, 1).await.unwrap();
    assert_eq!(second_page.len(), 1);
    assert_eq!(second_page[0].conversation_id, newer.conversation_id);
    let of_carol = read_models.conversations_of(carol, 10, 0).await.unwrap();
    assert_eq!(of_carol.len(), 1);
    assert!(
        read_models
            .conversations_of(outsider, 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
}
on_both_backends!(conversations_projection_tracks_members_and_activity);

async fn messages_projection_writes_each_message(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    let mut conversation = TestConversation::create(log.log.as_ref(), alice, &[bob], time(0)).await;
    let first = conversation.message(alice, "hi bob", time(5));
    let mut second = conversation.message(bob, "ciphertext", time(6));
    second.is_encrypted = true;
    second.message_type = secureconnect_events::domain::MessageType::File;
    let position = conversation
        .send(log.log.as_ref(), &[first.clone(), second.clone()])
        .await;

    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Messages],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Messages, position).await;
    projectors
        .stop()
        .await
        .expect("the messages projection failed");

    let page = store
        .read_models()
        .messages_page(conversation.conversation_id, None, 10)
        .await
        .expect("failed to read messages");
    assert_eq!(page.next, None);
    assert_eq!(page.messages.len(), 2);
    let newest = &page.messages[0];
    assert_eq!(newest.message_id, second.message_id);
    assert_eq!(newest.conversation_id, conversation.conversation_id);
    assert_eq!(newest.sender_id, bob);
    assert_eq!(newest.content, "ciphertext");
    assert!(newest.is_encrypted);
    assert_eq!(newest.message_type, "file");
    assert_eq!(newest.metadata, second.metadata);
    assert_eq!(newest.sent_at, time(6));
    // The creation is sequence 1 in the conversation's stream.
    assert_eq!(newest.sequence, 3);
    let oldest = &page.messages[1];
    assert_eq!(oldest.message_id, first.message_id);
    assert_eq!(oldest.sequence, 2);
    assert_eq!(oldest.content, "hi bob");
    assert!(!oldest.is_encrypted);
    assert_eq!(oldest.message_type, "text");
    assert_eq!(oldest.metadata, first.metadata);
}
on_both_backends!(messages_projection_writes_each_message);

async fn message_pages_neither_skip_nor_repeat(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let mut other = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    // Every message shares one `sent_at`, so only the sequence can order them.
    let mut sent = Vec::new();
    for commit in 0..5 {
        let messages: Vec<_> = (0..5)
            .map(|index| {
                conversation.message(sender, &format!("message {commit}-{index}"), time(100))
            })
            .collect();
        conversation.send(log.log.as_ref(), &messages).await;
        sent.extend(messages);
    }
    let last = other
        .send(
            log.log.as_ref(),
            &[other.message(sender, "elsewhere", time(100))],
        )
        .await;

    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Messages],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Messages, last).await;
    projectors
        .stop()
        .await
        .expect("the messages projection failed");

    let read_models = store.read_models();
    let mut received = Vec::new();
    let mut cursor: Option<MessageCursor> = None;
    let mut pages = 0;
    loop {
        let page = read_models
            .messages_page(conversation.conversation_id, cursor, 7)
            .await
            .expect("failed to read a page");
        pages += 1;
        assert!(page.messages.len() <= 7);
        received.extend(page.messages);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging did not end");
    }
    assert_eq!(pages, 4);
    let received_ids: Vec<Uuid> = received.iter().map(|message| message.message_id).collect();
    let expected_ids: Vec<Uuid> = sent
        .iter()
        .rev()
        .map(|message| message.message_id)
        .collect();
    assert_eq!(received_ids, expected_ids);
    let sequences: Vec<u64> = received.iter().map(|message| message.sequence).collect();
    assert!(sequences.windows(2).all(|pair| pair[0] > pair[1]));

    let exact = read_models
        .messages_page(conversation.conversation_id, None, 25)
        .await
        .unwrap();
    assert_eq!(exact.messages.len(), 25);
    assert_eq!(exact.next, None);
    let empty = read_models
        .messages_page(Uuid::new_v4(), None, 25)
        .await
        .unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(empty.next, None);
}
on_both_backends!(message_pages_neither_skip_nor_repeat);

async fn failed_batch_leaves_nothing_behind(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let mut last = 0;
    for index in 0..12 {
        last = conversation
            .send(
                log.log.as_ref(),
                &[conversation.message(sender, &format!("{index}"), time(index))],
            )
            .await;
    }

    // Every batch fails after its rows are written and before it commits.
    let (attempts_sender, mut attempts) = tokio::sync::mpsc::unbounded_channel::<PendingBatch>();
    let failing = ProjectorOptions {
        min_retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(50),
        before_commit: Some(Arc::new(move |pending: PendingBatch| {
            let _ = attempts_sender.send(pending);
            Err("injected failure".to_owned())
        })),
        ..ProjectorOptions::default()
    };
    let projectors = RunningProjectors::start(&log, &store, &[ProjectionName::Messages], failing);
    for _ in 0..3 {
        let pending = bounded("a batch attempt", attempts.recv())
            .await
            .expect("the hook was dropped");
        assert_eq!(pending.from_position, 0);
        assert_eq!(pending.to_position, last);
        assert_eq!(pending.rows, 12);
    }
    projectors
        .stop()
        .await
        .expect("the failing projection stopped on an error");

    assert_eq!(count_rows(&store, &database, "messages").await, 0);
    let checkpoint = store.checkpoint(ProjectionName::Messages).await.unwrap();
    assert_eq!(checkpoint.position, 0);
    assert_eq!(checkpoint.last_recorded_at, None);

    let restarted = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Messages],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Messages, last).await;
    restarted
        .stop()
        .await
        .expect("the messages projection failed");
    assert_eq!(count_rows(&store, &database, "messages").await, 12);
    let page = store
        .read_models()
        .messages_page(conversation.conversation_id, None, 100)
        .await
        .unwrap();
    let distinct: HashSet<Uuid> = page
        .messages
        .iter()
        .map(|message| message.message_id)
        .collect();
    assert_eq!(distinct.len(), 12);
}
on_both_backends!(failed_batch_leaves_nothing_behind);

async fn two_runtimes_apply_each_event_once(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // Two stores with pools of their own, as two processes would have.
    let first_store = database.open_store().await;
    let second_store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    // The hook runs only in a worker whose checkpoint update matched, so the rows it counts
    // are the rows committed.
    let committed_rows = Arc::new(AtomicUsize::new(0));
    let small_batches = |rows: Arc<AtomicUsize>| ProjectorOptions {
        batch_size: 3,
        min_retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(50),
        before_commit: Some(Arc::new(move |pending: PendingBatch| {
            if pending.projection == ProjectionName::Messages {
                rows.fetch_add(pending.rows, Ordering::SeqCst);
            }
            Ok(())
        })),
        ..ProjectorOptions::default()
    };
    let first = RunningProjectors::start(
        &log,
        &first_store,
        &[ProjectionName::Messages, ProjectionName::Conversations],
        small_batches(Arc::clone(&committed_rows)),
    );
    let second = RunningProjectors::start(
        &log,
        &second_store,
        &[ProjectionName::Messages, ProjectionName::Conversations],
        small_batches(Arc::clone(&committed_rows)),
    );

    let mut conversations = Vec::new();
    for _ in 0..3 {
        conversations.push(TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await);
    }
    let mut last = 0;
    let mut sent = 0;
    for round in 0..20 {
        for conversation in &mut conversations {
            let messages: Vec<_> = (0..(round % 3 + 1))
                .map(|index| conversation.message(sender, &format!("{round}-{index}"), time(round)))
                .collect();
            sent += messages.len();
            last = conversation.send(log.log.as_ref(), &messages).await;
        }
    }

    wait_for_checkpoint(&first_store, ProjectionName::Messages, last).await;
    wait_for_checkpoint(&first_store, ProjectionName::Conversations, last).await;
    first.stop().await.expect("the first runtime failed");
    second.stop().await.expect("the second runtime failed");

    assert_eq!(
        count_rows(&first_store, &database, "messages").await,
        sent as i64
    );
    assert_eq!(
        count_rows(&first_store, &database, "conversations").await,
        3
    );
    for conversation in &conversations {
        let page = first_store
            .read_models()
            .messages_page(conversation.conversation_id, None, 1000)
            .await
            .unwrap();
        let sequences: Vec<u64> = page
            .messages
            .iter()
            .rev()
            .map(|message| message.sequence)
            .collect();
        let expected: Vec<u64> = (2..=conversation.version.sequence).collect();
        assert_eq!(sequences, expected);
    }
    assert_eq!(committed_rows.load(Ordering::SeqCst), sent);
}
on_both_backends!(two_runtimes_apply_each_event_once);

async fn wait_for_returns_once_position_is_reached(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let runtime_store = database.open_store().await;
    // On PostgreSQL the waiting side has its own store, so it learns of commits only from
    // the database, as an API node in another process would.
    let api_store = match backend {
        Backend::Postgres => database.open_store().await,
        Backend::Sqlite => runtime_store.clone(),
    };
    let log = TestLog::embedded().await;
    let positions = bounded("starting the position watches", api_store.positions())
        .await
        .expect("failed to start the position watches");
    assert_eq!(positions.position(ProjectionName::Messages), 0);

    let timed_out = positions
        .wait_for(&[ProjectionName::Messages], 1, Duration::from_millis(100))
        .await;
    assert_eq!(
        timed_out,
        Err(WaitTimedOut {
            projection: ProjectionName::Messages,
            min_position: 1,
            position: 0,
            timeout: Duration::from_millis(100),
        })
    );

    let sender = Uuid::new_v4();
    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let projectors = RunningProjectors::start(
        &log,
        &runtime_store,
        &[ProjectionName::Messages, ProjectionName::Users],
        ProjectorOptions::default(),
    );
    let position = conversation
        .send(
            log.log.as_ref(),
            &[conversation.message(sender, "wait for me", time(1))],
        )
        .await;
    bounded(
        "waiting for the projections",
        positions.wait_for(
            &[ProjectionName::Messages, ProjectionName::Users],
            position,
            Duration::from_secs(20),
        ),
    )
    .await
    .expect("the projections did not reach the position");
    assert!(positions.position(ProjectionName::Messages) >= position);
    assert!(positions.current()[&ProjectionName::Users] >= position);

    // The conversations projection is not running, so it never gets there.
    let behind = positions
        .wait_for(
            &[ProjectionName::Conversations],
            position,
            Duration::from_millis(200),
        )
        .await
        .expect_err("the conversations projection is not running");
    assert_eq!(behind.projection, ProjectionName::Conversations);
    assert_eq!(behind.position, 0);
    projectors.stop().await.expect("the projections failed");
}
on_both_backends!(wait_for_returns_once_position_is_reached);

async fn cancellation_commits_the_batch_in_hand(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let mut positions = Vec::new();
    for index in 0..10 {
        positions.push(
            conversation
                .send(
                    log.log.as_ref(),
                    &[conversation.message(sender, &format!("{index}"), time(index))],
                )
                .await,
        );
    }

    // The hook cancels the runtime while the first batch is inside its transaction.
    let cancel = CancellationToken::new();
    let seen: Arc<Mutex<Vec<PendingBatch>>> = Arc::default();
    let options = ProjectorOptions {
        batch_size: 4,
        before_commit: Some(Arc::new({
            let cancel = cancel.clone();
            let seen = Arc::clone(&seen);
            move |pending: PendingBatch| {
                seen.lock().unwrap().push(pending);
                cancel.cancel();
                Ok(())
            }
        })),
        ..ProjectorOptions::default()
    };
    let runtime = ProjectorRuntime::new(Arc::clone(&log.log), store.clone(), options);
    bounded(
        "the cancelled projector returning",
        runtime.run_projection(ProjectionName::Messages, cancel),
    )
    .await
    .expect("the messages projection failed");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "the runtime started another batch after cancellation"
    );
    // A batch of four events: the creation commit and three one-message commits.
    assert_eq!(seen[0].to_position, positions[2]);
    assert_eq!(seen[0].events, 4);
    assert_eq!(seen[0].rows, 3);
    let checkpoint = store.checkpoint(ProjectionName::Messages).await.unwrap();
    assert_eq!(checkpoint.position, positions[2]);
    assert_eq!(count_rows(&store, &database, "messages").await, 3);
    let batch = runtime
        .last_batch(ProjectionName::Messages)
        .expect("the committed batch is recorded");
    assert_eq!(batch.from_position, 0);
    assert_eq!(batch.to_position, positions[2]);
    assert_eq!(batch.events, 4);
}
on_both_backends!(cancellation_commits_the_batch_in_hand);

async fn status_reports_lag_until_caught_up(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let last = conversation
        .send(
            log.log.as_ref(),
            &[conversation.message(sender, "late", time(1))],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let runtime = ProjectorRuntime::new(
        Arc::clone(&log.log),
        store.clone(),
        ProjectorOptions::default(),
    );
    let before = runtime.status().await.expect("failed to read the status");
    assert_eq!(before.len(), 3);
    for status in &before {
        assert_eq!(status.position, 0);
        assert_eq!(status.head_position, last);
        assert_eq!(status.lag_events, last);
        assert!(status.lag_seconds > 0.0, "{status:?}");
        assert_eq!(status.last_applied_recorded_at, None);
        assert_eq!(status.last_batch_apply_lag_seconds, None);
        assert_eq!(status.failure, None);
    }

    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let runtime = runtime.clone();
        let cancel = cancel.clone();
        async move { runtime.run(&ProjectionName::ALL, cancel).await }
    });
    for name in ProjectionName::ALL {
        wait_for_checkpoint(&store, name, last).await;
    }
    cancel.cancel();
    bounded("projectors stopping", task)
        .await
        .unwrap()
        .expect("the projections failed");

    let after = runtime.status().await.expect("failed to read the status");
    for status in &after {
        assert_eq!(status.position, last);
        assert_eq!(status.lag_events, 0);
        assert_eq!(status.lag_seconds, 0.0);
        assert!(status.last_applied_recorded_at.is_some());
        let apply_lag = status
            .last_batch_apply_lag_seconds
            .expect("a batch was applied");
        assert!(apply_lag >= 0.0);
    }
    let from_positions = store
        .positions()
        .await
        .unwrap()
        .status(log.log.as_ref())
        .await
        .unwrap();
    assert_eq!(from_positions.len(), 3);
    assert!(from_positions.iter().all(|status| status.position == last));
}
on_both_backends!(status_reports_lag_until_caught_up);

async fn undecodable_event_stops_only_its_projection(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let sender = Uuid::new_v4();

    let conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let broken = append(
        log.log.as_ref(),
        StreamId::for_uuid(AggregateType::Conversation, conversation.conversation_id),
        conversation.version,
        vec![NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "MessageSent".to_owned(),
            schema_version: 99,
            payload: serde_json::json!({ "unknown": true }),
        }],
    )
    .await;
    let user = user_registered("dave");
    let last = register(log.log.as_ref(), &user).await.position;

    let runtime = ProjectorRuntime::new(
        Arc::clone(&log.log),
        store.clone(),
        ProjectorOptions::default(),
    );
    let stopped = bounded(
        "the messages projector stopping",
        runtime.run_projection(ProjectionName::Messages, CancellationToken::new()),
    )
    .await
    .expect_err("an undecodable event must stop the projection");
    assert_eq!(stopped.position, broken.position);
    let checkpoint = store.checkpoint(ProjectionName::Messages).await.unwrap();
    assert!(checkpoint.position < broken.position);
    let status = runtime.status().await.unwrap();
    let messages = status
        .iter()
        .find(|status| status.name == ProjectionName::Messages)
        .unwrap();
    assert!(messages.failure.is_some());

    // The users projection does not read conversation events and passes the broken one.
    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Users],
        ProjectorOptions::default(),
    );
    wait_for_checkpoint(&store, ProjectionName::Users, last).await;
    projectors
        .stop()
        .await
        .expect("the users projection failed");
    assert!(
        store
            .read_models()
            .user(user.user_id)
            .await
            .unwrap()
            .is_some()
    );
}
on_both_backends!(undecodable_event_stops_only_its_projection);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_notifies_its_position() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.open_store().await;
    let log = TestLog::embedded().await;
    let TestDatabase::Postgres(postgres) = &database else {
        unreachable!("created on PostgreSQL")
    };
    let mut listener = bounded(
        "listening on PostgreSQL",
        sqlx::postgres::PgListener::connect(&postgres.url()),
    )
    .await
    .expect("failed to connect the listener");
    bounded(
        "listening on PostgreSQL",
        listener.listen("projection_positions"),
    )
    .await
    .expect("failed to listen");

    let sender = Uuid::new_v4();
    let mut conversation = TestConversation::create(log.log.as_ref(), sender, &[], time(0)).await;
    let position = conversation
        .send(
            log.log.as_ref(),
            &[conversation.message(sender, "notify", time(1))],
        )
        .await;
    let projectors = RunningProjectors::start(
        &log,
        &store,
        &[ProjectionName::Messages],
        ProjectorOptions::default(),
    );

    let expected = format!("messages:{position}");
    bounded("the notification of the last commit", async {
        loop {
            let notification = listener.recv().await.expect("the listener failed");
            if notification.payload() == expected {
                return;
            }
            // Earlier batches notify their own, lower positions.
            let (name, notified) = notification
                .payload()
                .split_once(':')
                .expect("a notification has the form <projection>:<position>");
            assert_eq!(name, "messages");
            assert!(notified.parse::<u64>().expect("a numeric position") < position);
        }
    })
    .await;
    projectors
        .stop()
        .await
        .expect("the messages projection failed");
}
