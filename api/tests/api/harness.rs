//! `spawn_app`: the real application on port 0 with a backend of its own, typed request
//! helpers, and clean-up of the stream, buckets and database when the test ends.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use secureconnect_api::app::{Application, ServerRole};
use secureconnect_api::config::Settings;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Overridden by `SECURECONNECT_TEST_NATS_URL`.
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// An admin connection that may create databases; overridden by
/// `SECURECONNECT_TEST_POSTGRES_URL`. Test databases are created beside its database.
const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn nats_url() -> String {
    std::env::var("SECURECONNECT_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

pub fn postgres_admin_url() -> String {
    std::env::var("SECURECONNECT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned())
}

/// The URL of database `name` on the admin connection's server.
pub fn postgres_database_url(name: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Runs a test function once on the embedded store and once on NATS and PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$test($crate::harness::TestBackend::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats_postgres() {
                super::$test($crate::harness::TestBackend::NatsPostgres).await;
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Embedded,
    NatsPostgres,
}

/// The backend resources of one test, removed on drop.
pub struct BackendGuard {
    settings: Settings,
    _data_dir: Option<tempfile::TempDir>,
    database: Option<String>,
}

impl BackendGuard {
    pub async fn create(backend: TestBackend) -> BackendGuard {
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.shutdown_grace_secs = 2;
        settings.log.filter = "warn".to_owned();
        match backend {
            TestBackend::Embedded => {
                let data_dir = tempfile::tempdir().expect("failed to create a temporary folder");
                settings.storage.data_dir = data_dir.path().to_path_buf();
                BackendGuard {
                    settings,
                    _data_dir: Some(data_dir),
                    database: None,
                }
            }
            TestBackend::NatsPostgres => {
                let id = Uuid::new_v4().simple().to_string();
                let database = format!("sc_test_{id}");
                create_database(&database).await;
                settings.nats.url = Some(nats_url());
                settings.nats.stream_name = format!("SC_TEST_{id}");
                settings.nats.subject_prefix = format!("sctest_{id}.events");
                settings.nats.ephemeral_prefix = format!("sctest_{id}.ephemeral");
                settings.postgres.url = Some(SecretString::from(postgres_database_url(&database)));
                settings.postgres.max_connections = 5;
                settings.auth.jwt_secret = Some(SecretString::from(format!("test-secret-{id}")));
                BackendGuard {
                    settings,
                    _data_dir: None,
                    database: Some(database),
                }
            }
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings.clone()
    }
}

impl Drop for BackendGuard {
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        let settings = self.settings.clone();
        // Drop cannot await, so clean-up runs on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failed to build the clean-up runtime");
            runtime.block_on(async move {
                delete_jetstream(&settings).await;
                drop_database(&database).await;
            });
        });
        let _ = cleanup.join();
    }
}

async fn admin_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = postgres_admin_url();
    tokio::time::timeout(TEST_TIMEOUT, sqlx::PgConnection::connect(&url))
        .await
        .unwrap_or_else(|_| panic!("timed out connecting to PostgreSQL at {url}"))
        .unwrap_or_else(|error| panic!("PostgreSQL at {url} is required for this test: {error}"))
}

async fn create_database(name: &str) {
    let mut connection = admin_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("failed to create the test database");
}

async fn drop_database(name: &str) {
    let mut connection = admin_connection().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut connection)
    .await;
}

async fn delete_jetstream(settings: &Settings) {
    let Ok(client) = async_nats::connect(nats_url()).await else {
        return;
    };
    let jetstream = async_nats::jetstream::new(client);
    let stream = &settings.nats.stream_name;
    let _ = jetstream.delete_stream(stream).await;
    for bucket in [format!("{stream}_SNAPSHOTS"), format!("{stream}_TICKETS")] {
        let _ = jetstream.delete_key_value(&bucket).await;
    }
}

/// One running API node.
pub struct TestNode {
    pub address: SocketAddr,
    cancel: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestNode {
    pub async fn start(settings: Settings, role: ServerRole) -> TestNode {
        let application = tokio::time::timeout(TEST_TIMEOUT, Application::build(settings, role))
            .await
            .expect("timed out starting the application")
            .expect("failed to start the application");
        let address = application.local_addr();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(application.run(cancel.clone()));
        TestNode {
            address,
            cancel,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Stops the node gracefully and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let handle = self.handle.take().expect("node already stopped");
        tokio::time::timeout(TEST_TIMEOUT, handle)
            .await
            .expect("node did not stop in time")
            .expect("node task panicked")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A running application with one node and a typed client.
pub struct TestApp {
    pub node: TestNode,
    pub client: reqwest::Client,
    // Dropped last, after the node, so the database is free when it is dropped.
    pub guard: BackendGuard,
}

pub async fn spawn_app(backend: TestBackend) -> TestApp {
    let guard = BackendGuard::create(backend).await;
    let node = TestNode::start(guard.settings(), ServerRole::Serve).await;
    TestApp {
        node,
        client: reqwest::Client::builder()
            .timeout(TEST_TIMEOUT)
            .build()
            .unwrap(),
        guard,
    }
}

/// A response reduced to what tests check.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    pub fn event_position(&self) -> Option<u64> {
        self.headers
            .get("x-event-position")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.node.url(path)
    }

    /// Sends a request to `path` on this app's node.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        send(&self.client, method, &self.url(path), token, body).await
    }

    pub async fn register(&self, name: &str) -> TestUser {
        let suffix = &Uuid::new_v4().simple().to_string()[..8];
        let username = format!("{name}_{suffix}");
        let email = format!("{username}@example.test");
        let password = format!("{name}-password-1");
        let response = self
            .request(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({
                    "email": email,
                    "username": username,
                    "password": password,
                    "display_name": name,
                })),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "register: {:?}",
            response.body
        );
        let data = response.data();
        TestUser {
            user_id: data["user"]["user_id"].as_str().unwrap().parse().unwrap(),
            username,
            email,
            password,
            access_token: data["access_token"].as_str().unwrap().to_owned(),
            refresh_token: data["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_direct_conversation(&self, creator: &TestUser, other: &TestUser) -> Uuid {
        let response = self
            .request(
                Method::POST,
                "/v1/conversations",
                Some(&creator.access_token),
                Some(json!({
                    "title": "direct",
                    "type": "direct",
                    "participant_ids": [other.user_id],
                })),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "create conversation: {:?}",
            response.body
        );
        response.data()["conversation_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn send_message(
        &self,
        sender: &TestUser,
        conversation_id: Uuid,
        content: &str,
    ) -> TestResponse {
        self.request(
            Method::POST,
            "/v1/messages",
            Some(&sender.access_token),
            Some(json!({
                "conversation_id": conversation_id,
                "content": content,
                "message_type": "text",
            })),
        )
        .await
    }
}

pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> TestResponse {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request failed");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .expect("failed to read the response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    TestResponse {
        status,
        headers,
        body,
    }
}
