//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables named `SECURECONNECT_<SECTION>__<KEY>` (for example `SECURECONNECT_NATS__URL`).
//!
//! Every option is documented on its field; `deploy/secureconnect.example.toml` lists them all
//! with their defaults. Secrets are `SecretString`, whose `Debug` output is redacted, so a
//! logged configuration never shows them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The whole configuration of one `secureconnect` process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub nats: NatsSettings,
    pub postgres: PostgresSettings,
    pub auth: AuthSettings,
    pub consistency: ConsistencySettings,
    pub websocket: WebSocketSettings,
    pub projections: ProjectionSettings,
    pub commands: CommandSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP and WebSocket listener binds. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Seconds a request may run before it is answered with 503.
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes. Larger bodies get 413.
    pub max_body_bytes: usize,
    /// Seconds that shutdown waits for in-flight requests before closing them.
    pub shutdown_grace_secs: u64,
    /// Browser origins allowed to call the API and open sockets. Requests without an `Origin`
    /// header (native clients) are always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_secs: 30,
            max_body_bytes: 512 * 1024,
            shutdown_grace_secs: 20,
            allowed_origins: vec![
                "http://localhost:3000".to_owned(),
                "http://127.0.0.1:3000".to_owned(),
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Folder of the embedded store: the event log file, the read-model file and the
    /// generated signing key. Used only when `nats.url` is not set.
    pub data_dir: PathBuf,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URL. When set, the event log is JetStream and the read models are on
    /// PostgreSQL (`postgres.url` is then required); when unset, everything is embedded.
    pub url: Option<String>,
    /// JetStream stream that contains the domain events.
    pub stream_name: String,
    /// Subject prefix of the event stream; events go to `<prefix>.<aggregate>.<id>`.
    pub subject_prefix: String,
    /// Subject prefix for ephemeral frames (typing, read receipts) that are never stored.
    pub ephemeral_prefix: String,
    /// Stream replicas: 1 on one server, 3 in a cluster.
    pub replicas: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: None,
            stream_name: "SECURECONNECT_EVENTS".to_owned(),
            subject_prefix: "sc.events".to_owned(),
            ephemeral_prefix: "sc.ephemeral".to_owned(),
            replicas: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    /// Connection URL of the read-model database, such as
    /// `postgres://postgres@127.0.0.1:5432/secureconnect`. Secret: it may carry a password.
    pub url: Option<SecretString>,
    /// Connections in the pool of each process.
    pub max_connections: u32,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: None,
            max_connections: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key that signs access and refresh tokens, at least 32 bytes, shared by every API
    /// node. Required with NATS; when embedded and unset, a random key is generated once and
    /// kept in `<data_dir>/jwt-secret`.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of access tokens, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a session's refresh tokens, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// `iss` claim of issued tokens, checked on every request.
    pub issuer: String,
    /// `aud` claim of issued tokens, checked on every request.
    pub audience: String,
    /// Threads that compute argon2id password hashes, each with about 19 MiB of working
    /// memory. Logins and registrations beyond this many wait their turn.
    pub password_hash_workers: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 60 * 60,
            issuer: "secureconnect-auth".to_owned(),
            audience: "secureconnect-api".to_owned(),
            password_hash_workers: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencySettings {
    /// Milliseconds a query waits for the read models to reach the caller's last write (or
    /// `X-Min-Position`) before answering 503 with `Retry-After`.
    pub read_wait_timeout_ms: u64,
    /// `/ready` reports not ready while a projection is more than this many log positions
    /// behind the log's head.
    pub ready_max_lag_events: u64,
    /// `/ready` reports not ready while the oldest event a projection has not applied is older
    /// than this many seconds, which catches a stopped projector under light traffic.
    pub ready_max_lag_secs: f64,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        ConsistencySettings {
            read_wait_timeout_ms: 2_000,
            ready_max_lag_events: 1_000,
            ready_max_lag_secs: 5.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Largest accepted client frame, in bytes; a larger frame closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Seconds between server pings.
    pub ping_interval_secs: u64,
    /// Seconds without any frame from the client (pongs included) before the socket is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a browser login ticket stays valid.
    pub ticket_ttl_secs: u64,
    /// Frames queued for one slow socket before it is closed.
    pub send_queue_frames: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            max_frame_bytes: 64 * 1024,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            ticket_ttl_secs: 30,
            send_queue_frames: 1_024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectionSettings {
    /// Most events a projector applies in one transaction.
    pub batch_size: usize,
}

impl Default for ProjectionSettings {
    fn default() -> Self {
        ProjectionSettings { batch_size: 500 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandSettings {
    /// Attempts of one command when its append conflicts with a concurrent one.
    pub max_attempts: u32,
    /// Aggregates kept in memory on each node, of all types together.
    pub cache_capacity: usize,
    /// Seconds after which a registration that stopped half-way may have its claims taken over.
    pub registration_grace_secs: u64,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            max_attempts: 10,
            cache_capacity: 100_000,
            registration_grace_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable text when standard output is a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,secureconnect_api=debug`. `RUST_LOG`
    /// overrides it.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Auto,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        // Every section is `#[serde(default)]`, so the defaults fill whatever the file and the
        // environment leave out.
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(SettingsError::Invalid(format!(
                    "configuration file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `SECURECONNECT_<SECTION>__<KEY>` names are settings; others with the prefix,
        // such as SECURECONNECT_CONFIG, belong to the command line or to the tests.
        figment = figment.merge(
            Env::prefixed("SECURECONNECT_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.nats.url.is_some() && self.postgres.url.is_none() {
            return Err(SettingsError::Invalid(
                "nats.url is set but postgres.url is not: the JetStream backend keeps its read \
                 models in PostgreSQL, so set SECURECONNECT_POSTGRES__URL too"
                    .to_owned(),
            ));
        }
        if self.postgres.url.is_some() && self.nats.url.is_none() {
            return Err(SettingsError::Invalid(
                "postgres.url is set but nats.url is not: set SECURECONNECT_NATS__URL too, or \
                 unset both to run on the embedded store"
                    .to_owned(),
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return Err(SettingsError::Invalid(
                "auth.jwt_secret must be at least 32 bytes long".to_owned(),
            ));
        }
        if self.nats.url.is_some() && self.auth.jwt_secret.is_none() {
            return Err(SettingsError::Invalid(
                "auth.jwt_secret is required with NATS, because every API node must verify the \
                 others' tokens: set SECURECONNECT_AUTH__JWT_SECRET to at least 32 random bytes"
                    .to_owned(),
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            return Err(SettingsError::Invalid(
                "auth token lifetimes must be greater than zero".to_owned(),
            ));
        }
        if self.projections.batch_size == 0 || self.commands.max_attempts == 0 {
            return Err(SettingsError::Invalid(
                "projections.batch_size and commands.max_attempts must be greater than zero"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        if self.nats.url.is_some() {
            Backend::NatsPostgres
        } else {
            Backend::Embedded
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs)
    }

    pub fn read_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.consistency.read_wait_timeout_ms)
    }
}

/// The event log and read-model store a process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files under `storage.data_dir`, all roles in one process.
    Embedded,
    /// JetStream for the log, PostgreSQL for the read models.
    NatsPostgres,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_select_embedded_backend() {
        let settings = Settings::default();
        assert_eq!(settings.backend(), Backend::Embedded);
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn nats_without_postgres_is_rejected() {
        let mut settings = Settings::default();
        settings.nats.url = Some("nats://127.0.0.1:4222".to_owned());
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("postgres.url"), "{error}");
    }

    // figment's `Jail` fixes the closure's error type, which clippy finds large.
    #[allow(clippy::result_large_err)]
    #[test]
    fn environment_names_without_section_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SECURECONNECT_CONFIG", "/nonexistent.toml");
            jail.set_env("SECURECONNECT_TEST_NATS_URL", "nats://127.0.0.1:4222");
            jail.set_env("SECURECONNECT_SERVER__LISTEN", "127.0.0.1:9999");
            let settings = Settings::load(None).map_err(|error| error.to_string())?;
            assert_eq!(settings.server.listen.port(), 9999);
            Ok(())
        });
    }

    #[test]
    fn short_jwt_secret_is_rejected() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some(SecretString::from("short"));
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("32 bytes"), "{error}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let mut settings = Settings::default();
        settings.auth.jwt_secret = Some(SecretString::from("a".repeat(40)));
        settings.postgres.url = Some(SecretString::from("postgres://user:hunter2@host/db"));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(&"a".repeat(40)), "{printed}");
    }
}
