//! The `secureconnect` binary: parses the command line, loads the configuration, starts
//! logging, and runs the chosen role until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use secureconnect_api::app::{Application, ServerRole};
use secureconnect_api::backends;
use secureconnect_api::cli::{Cli, Role};
use secureconnect_api::config::Settings;
use secureconnect_api::telemetry;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            // Logging is configured from the settings, so this error can only be printed.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("secureconnect: {error}");
            }
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init(&settings.log) {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("secureconnect: failed to start logging: {error}");
        }
        return ExitCode::from(2);
    }

    let role = cli.role.unwrap_or(Role::Serve);
    match run(role, settings).await {
        Ok(()) => {
            tracing::info!("secureconnect stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "secureconnect stopped with an error"
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(role: Role, settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    match role {
        Role::Serve => {
            let application = Application::build(settings, ServerRole::Serve).await?;
            application.run(cancel).await
        }
        Role::Api => {
            backends::require_split_backend(&settings, "api")?;
            let application = Application::build(settings, ServerRole::Api).await?;
            application.run(cancel).await
        }
        Role::Project { only } => {
            backends::require_split_backend(&settings, "project")?;
            let names = backends::parse_projection_names(&only)?;
            backends::run_projector_process(&settings, names, cancel).await
        }
        Role::Migrate => backends::migrate(&settings).await,
    }
}

/// Cancels `cancel` on the first SIGTERM or Ctrl-C.
async fn cancel_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown signal received"),
        _ = terminate => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
    }
    cancel.cancel();
}
