//! Test fixtures: a JetStream backend on a stream and buckets of its own, with random names so
//! tests run in parallel, removed again when the fixture is dropped, also after a panic.

#![allow(dead_code)]

use std::ops::Deref;
use std::time::Duration;

use secureconnect_events::{EventLog, SnapshotStore};
use secureconnect_nats::{JetStreamBackend, JetStreamConfig, JetStreamLog, JetStreamSnapshotStore};
use uuid::Uuid;

/// The NATS server every test uses; it must run with JetStream enabled.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// The maximum wait for any single network step of a test.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a configuration with a fresh stream name and subject prefixes.
pub fn unique_config() -> JetStreamConfig {
    let id = Uuid::new_v4().simple().to_string();
    JetStreamConfig {
        url: NATS_URL.to_owned(),
        stream_name: format!("SC_TEST_{id}"),
        subject_prefix: format!("sctest_{id}.events"),
        ephemeral_prefix: format!("sctest_{id}.ephemeral"),
        replicas: 1,
        request_timeout: Duration::from_secs(5),
    }
}

/// Connects a backend, failing the test loudly when NATS is missing.
///
/// NOTE: nats-server 2.9.10 removes an account's storage directory when its last stream is
/// deleted, and a stream created at that moment fails with "error creating store for
/// stream" (error code 10049). Parallel tests delete and create streams all the time, so
/// that one error is retried a few times. Any other error fails the test at once.
pub async fn connect(config: JetStreamConfig) -> JetStreamBackend {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let result =
            tokio::time::timeout(STEP_TIMEOUT, JetStreamBackend::connect(config.clone())).await;
        match result {
            Ok(Ok(backend)) => return backend,
            Ok(Err(error)) if attempt < ATTEMPTS && error.to_string().contains("10049") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(error)) => panic!(
                "failed to connect to NATS with JetStream at {NATS_URL}: {error}. Start \
                 nats-server with JetStream enabled (nats-server -js)"
            ),
            Err(_) => panic!("connecting to NATS at {NATS_URL} timed out after {STEP_TIMEOUT:?}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Removes a test's stream and buckets when dropped.
pub struct Cleanup {
    config: JetStreamConfig,
}

impl Cleanup {
    pub fn new(config: &JetStreamConfig) -> Cleanup {
        Cleanup {
            config: config.clone(),
        }
    }
}

impl Drop for Cleanup {
    /// Deletes on a thread of its own with its own connection and runtime, because `Drop`
    /// cannot await and the test's runtime may be single-threaded and blocked here.
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
                tokio::time::timeout(STEP_TIMEOUT, delete_resources(config)).await
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

/// Deletes the stream and both buckets of `config`, ignoring those that do not exist.
async fn delete_resources(config: JetStreamConfig) -> Result<(), async_nats::Error> {
    let client = async_nats::connect(config.url.as_str()).await?;
    let jetstream = async_nats::jetstream::new(client);
    for stream in [
        config.stream_name.clone(),
        format!("KV_{}", config.snapshot_bucket()),
        format!("KV_{}", config.ticket_bucket()),
    ] {
        if jetstream.get_stream(&stream).await.is_ok() {
            jetstream.delete_stream(&stream).await?;
        }
    }
    Ok(())
}

/// A connected backend on its own stream and buckets.
pub struct TestBackend {
    pub backend: JetStreamBackend,
    pub config: JetStreamConfig,
    /// Declared last so that it runs after the backend's handles are dropped.
    _cleanup: Cleanup,
}

impl TestBackend {
    pub async fn start() -> TestBackend {
        let config = unique_config();
        let cleanup = Cleanup::new(&config);
        let backend = connect(config.clone()).await;
        TestBackend {
            backend,
            config,
            _cleanup: cleanup,
        }
    }
}

/// The contract suite's event log fixture.
pub struct LogFixture {
    log: JetStreamLog,
    _backend: TestBackend,
}

impl Deref for LogFixture {
    type Target = dyn EventLog;

    fn deref(&self) -> &Self::Target {
        &self.log
    }
}

pub async fn new_log() -> LogFixture {
    let backend = TestBackend::start().await;
    LogFixture {
        log: backend.backend.event_log(),
        _backend: backend,
    }
}

/// The contract suite's snapshot store fixture.
pub struct SnapshotFixture {
    store: JetStreamSnapshotStore,
    _backend: TestBackend,
}

impl Deref for SnapshotFixture {
    type Target = dyn SnapshotStore;

    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

pub async fn new_snapshot_store() -> SnapshotFixture {
    let backend = TestBackend::start().await;
    SnapshotFixture {
        store: backend.backend.snapshot_store(),
        _backend: backend,
    }
}
