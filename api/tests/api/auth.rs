//! Registration, login, refresh-token rotation and logout.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::harness::{TestBackend, spawn_app};

both_backends!(register_returns_user_and_tokens);
async fn register_returns_user_and_tokens(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let me = app
        .request(Method::GET, "/v1/users/me", Some(&alice.access_token), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.data()["user_id"], alice.user_id.to_string());
    assert_eq!(me.data()["username"], alice.username);
    assert_eq!(me.data()["email"], alice.email);
    assert_eq!(me.data()["status"], "offline");
    assert!(me.body["meta"]["request_id"].is_string(), "{:?}", me.body);
}

both_backends!(duplicate_email_and_username_conflict);
async fn duplicate_email_and_username_conflict(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let same_email = app
        .request(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({
                "email": alice.email.to_uppercase(),
                "username": "someone_else",
                "password": "password-123",
                "display_name": "Other",
            })),
        )
        .await;
    assert_eq!(
        same_email.status,
        StatusCode::CONFLICT,
        "{:?}",
        same_email.body
    );
    assert_eq!(same_email.error_message(), "email already registered");

    let same_username = app
        .request(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({
                "email": "other@example.test",
                "username": alice.username.to_uppercase(),
                "password": "password-123",
                "display_name": "Other",
            })),
        )
        .await;
    assert_eq!(
        same_username.status,
        StatusCode::CONFLICT,
        "{:?}",
        same_username.body
    );
    assert_eq!(same_username.error_message(), "username already taken");

    // The email claim released by the failed registration is free again.
    let retry = app
        .request(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({
                "email": "other@example.test",
                "username": "fresh_name",
                "password": "password-123",
                "display_name": "Other",
            })),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
}

both_backends!(concurrent_registrations_of_one_email_admit_one);
async fn concurrent_registrations_of_one_email_admit_one(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let attempts = (0..8).map(|index| {
        app.request(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({
                "email": "race@example.test",
                "username": format!("racer_{index}"),
                "password": "password-123",
                "display_name": "Racer",
            })),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let created = responses
        .iter()
        .filter(|response| response.status == StatusCode::CREATED)
        .count();
    let conflicts = responses
        .iter()
        .filter(|response| response.status == StatusCode::CONFLICT)
        .count();
    assert_eq!(created, 1, "{responses:?}");
    assert_eq!(conflicts, 7, "{responses:?}");
}

both_backends!(login_rejects_wrong_password_and_unknown_email_alike);
async fn login_rejects_wrong_password_and_unknown_email_alike(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let good = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": alice.email, "password": alice.password })),
        )
        .await;
    assert_eq!(good.status, StatusCode::OK, "{:?}", good.body);
    assert_eq!(good.data()["user"]["user_id"], alice.user_id.to_string());
    assert!(good.data()["access_token"].is_string());

    let wrong_password = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": alice.email, "password": "not-the-password" })),
        )
        .await;
    let unknown = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "nobody@example.test", "password": "not-the-password" })),
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.error_message(), unknown.error_message());
}

both_backends!(refresh_rotates_and_reuse_revokes_session);
async fn refresh_rotates_and_reuse_revokes_session(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let first = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": alice.refresh_token })),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let rotated_access = first.data()["access_token"].as_str().unwrap().to_owned();
    let rotated_refresh = first.data()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated_refresh, alice.refresh_token);

    let profile = app
        .request(Method::GET, "/v1/auth/profile", Some(&rotated_access), None)
        .await;
    assert_eq!(profile.status, StatusCode::OK, "{:?}", profile.body);
    assert_eq!(profile.data()["email"], alice.email);

    // Presenting the spent token again revokes the whole session.
    let reuse = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": alice.refresh_token })),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED, "{:?}", reuse.body);

    let after_reuse = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": rotated_refresh })),
        )
        .await;
    assert_eq!(
        after_reuse.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        after_reuse.body
    );

    let access_after_reuse = app
        .request(Method::GET, "/v1/auth/profile", Some(&rotated_access), None)
        .await;
    assert_eq!(access_after_reuse.status, StatusCode::UNAUTHORIZED);
}

both_backends!(access_and_refresh_tokens_cannot_be_swapped);
async fn access_and_refresh_tokens_cannot_be_swapped(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let refresh_as_access = app
        .request(
            Method::GET,
            "/v1/users/me",
            Some(&alice.refresh_token),
            None,
        )
        .await;
    assert_eq!(refresh_as_access.status, StatusCode::UNAUTHORIZED);

    let access_as_refresh = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": alice.access_token })),
        )
        .await;
    assert_eq!(access_as_refresh.status, StatusCode::UNAUTHORIZED);
}

both_backends!(logout_revokes_access_and_refresh_tokens);
async fn logout_revokes_access_and_refresh_tokens(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    let logout = app
        .request(
            Method::POST,
            "/v1/auth/logout",
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::OK, "{:?}", logout.body);
    assert_eq!(logout.data()["message"], "Logged out successfully");
    assert!(logout.event_position().is_some());

    let after = app
        .request(Method::GET, "/v1/users/me", Some(&alice.access_token), None)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    let refresh = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": alice.refresh_token })),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
}

both_backends!(protected_routes_require_valid_token);
async fn protected_routes_require_valid_token(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let mut tampered = alice.access_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    for (token, case) in [
        (None, "no token"),
        (Some("not-a-jwt"), "garbage token"),
        (Some(tampered.as_str()), "tampered token"),
    ] {
        for path in ["/v1/users/me", "/v1/auth/profile", "/v1/conversations"] {
            let response = app.request(Method::GET, path, token, None).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{case} on {path}"
            );
            assert_eq!(response.error_code(), "UNAUTHORIZED", "{case} on {path}");
        }
    }
}

both_backends!(malformed_register_bodies_are_rejected);
async fn malformed_register_bodies_are_rejected(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({}), "missing fields"),
        (
            json!({"email": 5, "username": "abc", "password": "password-1", "display_name": "A"}),
            "wrong type",
        ),
        (
            json!({"email": "not-an-email", "username": "abc", "password": "password-1", "display_name": "A"}),
            "bad email",
        ),
        (
            json!({"email": "a@b.test", "username": "ab", "password": "password-1", "display_name": "A"}),
            "short username",
        ),
        (
            json!({"email": "a@b.test", "username": "abc", "password": "short", "display_name": "A"}),
            "short password",
        ),
        (
            json!({"email": "a@b.test", "username": "abc", "password": "password-1", "display_name": "  "}),
            "blank display name",
        ),
    ];
    for (body, case) in cases {
        let response = app
            .request(Method::POST, "/v1/auth/register", None, Some(body))
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{case}: {:?}",
            response.body
        );
        assert_eq!(response.error_code(), "VALIDATION_ERROR", "{case}");
        assert!(!response.error_message().is_empty(), "{case}");
    }

    let not_json = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
}
