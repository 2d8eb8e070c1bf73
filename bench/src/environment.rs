//! The resources one run creates and must remove again: a PostgreSQL database, JetStream
//! stream names (the server's stream, its two buckets and the raw-append stream), a temporary
//! directory, and the server process. [`Environment::remove`] tears everything down and runs
//! on success, failure and Ctrl-C alike.

use std::path::Path;

use anyhow::Context;
use async_nats::jetstream::context::{DeleteStreamError, DeleteStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use rand::Rng;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tempfile::TempDir;

use crate::options::{Backend, Options};
use crate::server::ServerProcess;

/// Random names, so runs never share state with each other or with tests.
#[derive(Debug, Clone)]
pub struct Names {
    /// The server's event stream; its buckets are `<stream>_SNAPSHOTS` and `<stream>_TICKETS`.
    pub stream: String,
    pub subject_prefix: String,
    pub ephemeral_prefix: String,
    /// The stream of the raw JetStream measurement, with subjects under `raw_subject_prefix`.
    pub raw_stream: String,
    pub raw_subject_prefix: String,
    pub database: String,
}

impl Names {
    fn random() -> Names {
        let tag = hex::encode(rand::rng().random::<[u8; 4]>());
        Names {
            stream: format!("SCBENCH_{tag}"),
            subject_prefix: format!("scbench_{tag}.events"),
            ephemeral_prefix: format!("scbench_{tag}.ephemeral"),
            raw_stream: format!("SCBENCH_{tag}_RAW"),
            raw_subject_prefix: format!("scbench_{tag}.raw"),
            database: format!("secureconnect_bench_{tag}"),
        }
    }

    pub fn snapshot_bucket(&self) -> String {
        format!("{}_SNAPSHOTS", self.stream)
    }

    pub fn ticket_bucket(&self) -> String {
        format!("{}_TICKETS", self.stream)
    }
}

pub struct Environment {
    pub names: Names,
    pub backend: Backend,
    pub nats_url: String,
    admin_postgres_url: String,
    /// The benchmark database's URL; `None` with the embedded backend.
    pub postgres_url: Option<String>,
    /// Holds the embedded store and the server's log file; deleted when dropped.
    pub temp_dir: TempDir,
    /// The server under test while it runs. `remove` stops it before dropping the database,
    /// which would otherwise wait for the server's connections.
    pub server: Option<ServerProcess>,
}

impl Environment {
    /// Creates the database (NATS backend) and the temporary directory. Streams are created
    /// later, by the server and by the raw-append measurement.
    pub async fn create(options: &Options) -> anyhow::Result<Environment> {
        let names = Names::random();
        let temp_dir = tempfile::Builder::new()
            .prefix("secureconnect-bench-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        let mut environment = Environment {
            names,
            backend: options.backend,
            nats_url: options.nats_url.clone(),
            admin_postgres_url: options.postgres_url.clone(),
            postgres_url: None,
            temp_dir,
            server: None,
        };
        if options.backend == Backend::Nats {
            let database = &environment.names.database;
            let mut admin = connect_admin(&environment.admin_postgres_url).await?;
            // The name is a fixed prefix and hex digits, so it needs no escaping.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{database}\""
            )))
            .execute(&mut admin)
            .await
            .with_context(|| format!("failed to create database {database}"))?;
            admin.close().await.ok();
            environment.postgres_url =
                Some(database_url(&environment.admin_postgres_url, database)?);
        }
        Ok(environment)
    }

    pub fn data_dir(&self) -> &Path {
        self.temp_dir.path()
    }

    /// Stops the server, deletes the streams and buckets and drops the database. Every step
    /// runs even when an earlier one fails; the failures are returned together.
    pub async fn remove(mut self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(server) = self.server.take()
            && let Err(error) = server.stop().await
        {
            failures.push(format!("failed to stop the server: {error:#}"));
        }
        if self.backend == Backend::Nats {
            failures.extend(self.delete_streams().await);
            if let Err(error) = self.drop_database().await {
                failures.push(format!("{error:#}"));
            }
        }
        failures
    }

    async fn delete_streams(&self) -> Vec<String> {
        let client = match async_nats::ConnectOptions::new()
            .name("secureconnect-bench cleanup")
            .connect(self.nats_url.as_str())
            .await
        {
            Ok(client) => client,
            Err(error) => {
                return vec![format!(
                    "failed to connect to {} to delete stream {}: {error}",
                    self.nats_url, self.names.stream
                )];
            }
        };
        let context = jetstream::new(client.clone());
        let mut failures = Vec::new();
        // A key-value bucket is the stream `KV_<bucket>`.
        let streams = [
            self.names.stream.clone(),
            self.names.raw_stream.clone(),
            format!("KV_{}", self.names.snapshot_bucket()),
            format!("KV_{}", self.names.ticket_bucket()),
        ];
        for stream in streams {
            match context.delete_stream(&stream).await {
                Ok(_) => {}
                // The server may have stopped before creating it.
                Err(error) if is_stream_not_found(&error) => {}
                Err(error) => failures.push(format!("failed to delete stream {stream}: {error}")),
            }
        }
        client.drain().await.ok();
        failures
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let database = &self.names.database;
        let mut admin = connect_admin(&self.admin_postgres_url).await?;
        // FORCE ends the sessions still open on it, such as a projection-lag listener.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("failed to drop database {database}"))?;
        admin.close().await.ok();
        Ok(())
    }
}

fn is_stream_not_found(error: &DeleteStreamError) -> bool {
    matches!(
        error.kind(),
        DeleteStreamErrorKind::JetStream(error) if error.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

async fn connect_admin(url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(url)
        .await
        .with_context(|| format!("failed to connect to PostgreSQL at {url}"))
}

/// Returns `admin_url` with its database replaced by `database`.
fn database_url(admin_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url)
        .with_context(|| format!("invalid PostgreSQL URL {admin_url:?}"))?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}
