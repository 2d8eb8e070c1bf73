//! Registration, login, token refresh, logout and the token's profile.
//!
//! Every session lives in the log: login appends `SessionStarted`, refresh appends
//! `SessionRefreshed` (or `SessionRevoked` when a spent refresh token comes back), and logout
//! appends `SessionRevoked`, which every API node reads to reject the session's access tokens.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use secureconnect_commands::input::{DisplayName, Email, Password, Username};
use secureconnect_commands::registration::{
    NewRegistration, RegistrationError, find_user_by_email, register_user,
};
use secureconnect_commands::session::{Session, SessionCommand};
use secureconnect_commands::user::User;
use secureconnect_commands::{BusError, CommandError};
use secureconnect_events::domain::{SessionEvent, SessionRevocationReason};
use secureconnect_events::{AggregateId, CommitMetadata};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{AuthUser, TokenPair};
use crate::http::{ApiError, Created, Envelope, ValidJson, WithPosition};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/profile", get(profile))
}

#[derive(Debug, Deserialize)]
struct RegisterRequest {
    email: String,
    username: String,
    password: String,
    display_name: String,
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

/// The public part of an account, as register and login return it.
#[derive(Debug, Serialize)]
pub struct UserResponse {
    pub user_id: Uuid,
    pub email: String,
    pub username: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct AuthResponse {
    user: UserResponse,
    #[serde(flatten)]
    tokens: TokenPair,
}

/// # `POST /v1/auth/register`
///
/// Creates an account and logs it in. 201 with the user and a token pair; 409 when the email
/// address or the username is taken (both compared case-insensitively).
async fn register(
    State(state): State<AppState>,
    ValidJson(request): ValidJson<RegisterRequest>,
) -> Result<WithPosition<Created<AuthResponse>>, ApiError> {
    let email = Email::parse(&request.email).map_err(validation)?;
    let username = Username::parse(&request.username).map_err(validation)?;
    let display_name = DisplayName::parse(&request.display_name).map_err(validation)?;
    let password = Password::parse(&request.password).map_err(validation)?;

    let password_hash = state.passwords.hash(password.expose().to_owned()).await?;
    let now = Utc::now();
    let registration = NewRegistration {
        email: email.clone(),
        username: username.clone(),
        display_name: display_name.clone(),
        password_hash,
        now,
    };
    let registered = register_user(&state.bus, registration, metadata(None))
        .await
        .map_err(|error| match error {
            RegistrationError::EmailTaken => {
                ApiError::Conflict("email already registered".to_owned())
            }
            RegistrationError::UsernameTaken => {
                ApiError::Conflict("username already taken".to_owned())
            }
            // The registration stalled past the grace period and another one fenced it off.
            RegistrationError::Rejected(_) => ApiError::Conflict(
                "registration was interrupted by a concurrent registration; retry".to_owned(),
            ),
            RegistrationError::Command(failure) => bus_failure(failure),
        })?;

    let session = start_session(&state, registered.user_id, username.as_str(), now).await?;
    let position = registered.position.max(session.position);
    state.consistency.record_write(registered.user_id, position);

    let user = UserResponse {
        user_id: registered.user_id,
        email: email.as_str().to_owned(),
        username: username.as_str().to_owned(),
        display_name: display_name.as_str().to_owned(),
        avatar_url: None,
        status: "offline",
        created_at: now,
    };
    let response = AuthResponse {
        user,
        tokens: session.tokens,
    };
    Ok(WithPosition(Some(position), Created(response)))
}

/// # `POST /v1/auth/login`
///
/// 200 with the user and a new session's token pair; 401 "invalid email or password" for an
/// unknown account and for a wrong password alike, after the same password-hash work.
async fn login(
    State(state): State<AppState>,
    ValidJson(request): ValidJson<LoginRequest>,
) -> Result<WithPosition<Envelope<AuthResponse>>, ApiError> {
    let email = Email::parse(&request.email).map_err(validation)?;
    if request.password.is_empty() {
        return Err(ApiError::validation("password is required"));
    }

    let user = find_user_by_email(&state.bus, &email)
        .await
        .map_err(bus_failure)?;
    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let verified = state
        .passwords
        .verify(request.password, stored_hash)
        .await?;
    let user = match (verified, user) {
        (true, Some(user)) => user,
        _ => return Err(ApiError::unauthorized("invalid email or password")),
    };

    let now = Utc::now();
    let session = start_session(&state, user.user_id, &user.username, now).await?;
    state
        .consistency
        .record_write(user.user_id, session.position);
    let response = AuthResponse {
        user: UserResponse {
            user_id: user.user_id,
            email: user.email.clone(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            avatar_url: None,
            status: "offline",
            created_at: user.registered_at,
        },
        tokens: session.tokens,
    };
    Ok(WithPosition(Some(session.position), Envelope(response)))
}

/// # `POST /v1/auth/refresh`
///
/// Exchanges the session's current refresh token for a new pair. A refresh token that was
/// already exchanged revokes the whole session (its copy leaked) and gets 401.
async fn refresh(
    State(state): State<AppState>,
    ValidJson(request): ValidJson<RefreshRequest>,
) -> Result<WithPosition<Envelope<TokenPair>>, ApiError> {
    let claims = state
        .tokens
        .verify_refresh(request.refresh_token.trim())
        .map_err(|_| ApiError::unauthorized("invalid or expired refresh token"))?;
    let now = Utc::now();
    let command = SessionCommand::Refresh {
        presented_generation: claims.generation,
        now,
    };
    let executed = state
        .bus
        .execute::<Session>(
            AggregateId::from_uuid(claims.sid),
            command,
            metadata(Some(claims.sub)),
        )
        .await
        .map_err(|error| {
            command_failure(error, |_| {
                ApiError::unauthorized("invalid or expired refresh token")
            })
        })?;
    if let Some(position) = executed.position {
        state.consistency.record_write(claims.sub, position);
    }

    let mut new_generation = None;
    for event in &executed.events {
        match event {
            SessionEvent::SessionRefreshed(refreshed) => {
                new_generation = Some(refreshed.generation)
            }
            SessionEvent::SessionRevoked(revoked) => {
                state
                    .revoked_sessions
                    .mark_revoked(revoked.session_id, revoked.revoked_at);
                if revoked.reason == SessionRevocationReason::RefreshTokenReuse {
                    tracing::warn!(
                        session_id = %revoked.session_id,
                        user_id = %revoked.user_id,
                        "spent refresh token presented again; session revoked"
                    );
                }
                return Err(ApiError::unauthorized(
                    "refresh token was already used; the session has been revoked",
                ));
            }
            SessionEvent::SessionStarted(_) => {}
        }
    }
    let generation =
        new_generation.ok_or_else(|| ApiError::unauthorized("invalid or expired refresh token"))?;

    let (user, _) = state
        .bus
        .load::<User>(AggregateId::from_uuid(claims.sub))
        .await
        .map_err(bus_failure)?;
    let username = user
        .registered()
        .map(|registered| registered.username.clone())
        .ok_or_else(|| ApiError::unauthorized("invalid or expired refresh token"))?;
    let session_expires_at = DateTime::from_timestamp(claims.exp, 0)
        .ok_or_else(|| ApiError::unauthorized("invalid or expired refresh token"))?;
    let tokens = state.tokens.issue_pair(
        claims.sub,
        &username,
        claims.sid,
        generation,
        session_expires_at,
        now,
    );
    Ok(WithPosition(executed.position, Envelope(tokens)))
}

/// # `POST /v1/auth/logout`
///
/// Revokes the caller's session at once on every API node: its refresh token and every access
/// token issued for it stop working.
async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<WithPosition<Envelope<serde_json::Value>>, ApiError> {
    let now = Utc::now();
    let executed = state
        .bus
        .execute::<Session>(
            AggregateId::from_uuid(user.session_id),
            SessionCommand::Revoke {
                reason: SessionRevocationReason::Logout,
                now,
            },
            metadata(Some(user.user_id)),
        )
        .await
        .map_err(|error| {
            command_failure(error, |rejection| ApiError::Internal(rejection.into()))
        })?;
    state.revoked_sessions.mark_revoked(user.session_id, now);
    if let Some(position) = executed.position {
        state.consistency.record_write(user.user_id, position);
    }
    Ok(WithPosition(
        executed.position,
        Envelope(json!({ "message": "Logged out successfully" })),
    ))
}

/// # `GET /v1/auth/profile`
///
/// The caller's identity, read from the user aggregate in the log.
async fn profile(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Envelope<serde_json::Value>, ApiError> {
    let (account, _) = state
        .bus
        .load::<User>(AggregateId::from_uuid(user.user_id))
        .await
        .map_err(bus_failure)?;
    let registered = account
        .registered()
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    Ok(Envelope(json!({
        "user_id": user.user_id,
        "email": registered.email,
        "username": registered.username,
        "role": user.role,
    })))
}

struct StartedSession {
    tokens: TokenPair,
    position: u64,
}

async fn start_session(
    state: &AppState,
    user_id: Uuid,
    username: &str,
    now: DateTime<Utc>,
) -> Result<StartedSession, ApiError> {
    let session_id = Uuid::new_v4();
    let expires_at = now
        + chrono::Duration::from_std(state.tokens.refresh_ttl())
            .map_err(|error| ApiError::Internal(error.into()))?;
    let executed = state
        .bus
        .execute::<Session>(
            AggregateId::from_uuid(session_id),
            SessionCommand::Start {
                session_id,
                user_id,
                now,
                expires_at,
            },
            metadata(Some(user_id)),
        )
        .await
        .map_err(|error| {
            command_failure(error, |rejection| ApiError::Internal(rejection.into()))
        })?;
    let position = executed
        .position
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("session start appended no event")))?;
    let tokens = state
        .tokens
        .issue_pair(user_id, username, session_id, 1, expires_at, now);
    Ok(StartedSession { tokens, position })
}

pub(crate) fn metadata(actor: Option<Uuid>) -> CommitMetadata {
    let correlation_id = crate::http::request_id::current_request_id()
        .and_then(|id| Uuid::parse_str(&id).ok())
        .unwrap_or_else(Uuid::new_v4);
    CommitMetadata {
        actor,
        correlation_id,
        causation_id: None,
    }
}

pub(crate) fn validation(error: impl std::fmt::Display) -> ApiError {
    ApiError::Validation(error.to_string())
}

/// Maps a failure of the bus or the log, not a domain rule, to its status: 409 after too
/// many concurrent changes, 503 when the log failed, 500 for what can only be a bug.
pub(crate) fn bus_failure(error: BusError) -> ApiError {
    match error {
        CommandError::Conflict { .. } => {
            ApiError::Conflict("too many concurrent changes; retry the request".to_owned())
        }
        CommandError::Log(log_error) => ApiError::BackendUnavailable(log_error.into()),
        other => ApiError::Internal(other.into()),
    }
}

/// Maps a command's error: domain rejections through `domain`, everything else through
/// [`bus_failure`].
pub(crate) fn command_failure<E>(
    error: CommandError<E>,
    domain: impl FnOnce(E) -> ApiError,
) -> ApiError {
    match error.into_domain() {
        Ok(rejection) => domain(rejection),
        Err(failure) => bus_failure(failure),
    }
}
