//! The command line: one binary with a subcommand per role.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// SecureConnect: a self-hosted backend for secure messaging.
///
/// With no configuration, `secureconnect` runs everything in one process on an embedded store
/// under ./data. Set SECURECONNECT_NATS__URL and SECURECONNECT_POSTGRES__URL (or the same keys
/// in a TOML file) to run on NATS JetStream and PostgreSQL, where the roles can run as
/// separate processes. Every option can come from the file or from an environment variable
/// named SECURECONNECT_<SECTION>__<KEY>; deploy/secureconnect.example.toml lists them all.
#[derive(Debug, Parser)]
#[command(name = "secureconnect", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file, layered over the built-in defaults and under the environment.
    #[arg(long, short = 'c', env = "SECURECONNECT_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Role {
    /// Run the API and every projector in one process (the default).
    Serve,
    /// Run the API only: stateless, as many as needed behind a load balancer. Needs NATS and
    /// PostgreSQL, and projector processes (`project`) that keep the read models.
    Api,
    /// Run projector workers only: all projections, or those named with --only. Needs NATS and
    /// PostgreSQL.
    Project {
        /// Comma-separated projections to run: users, conversations, messages.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Apply the PostgreSQL read-model migrations, then exit.
    Migrate,
}
