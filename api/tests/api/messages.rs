//! Sending messages and paging through history.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::both_backends;
use crate::harness::{TestBackend, spawn_app};

both_backends!(paging_returns_every_message_once_newest_first);
async fn paging_returns_every_message_once_newest_first(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;

    let mut sent = Vec::new();
    for index in 0..45 {
        let response = app
            .send_message(&alice, conversation_id, &format!("message {index}"))
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        assert_eq!(response.data()["content"], format!("message {index}"));
        assert_eq!(response.data()["sender_id"], alice.user_id.to_string());
        sent.push(response.data()["message_id"].as_str().unwrap().to_owned());
    }

    let mut received = Vec::new();
    let mut page_state = String::new();
    loop {
        let path = format!(
            "/v1/messages?conversation_id={conversation_id}&limit=10&page_state={page_state}"
        );
        let page = app
            .request(Method::GET, &path, Some(&alice.access_token), None)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for message in page.data()["messages"].as_array().unwrap() {
            received.push(message["message_id"].as_str().unwrap().to_owned());
        }
        if !page.data()["has_more"].as_bool().unwrap() {
            assert_eq!(page.data()["next_page_state"], "");
            break;
        }
        page_state = page.data()["next_page_state"].as_str().unwrap().to_owned();
    }
    sent.reverse();
    assert_eq!(
        received, sent,
        "pages must hold every message once, newest first"
    );
    assert_eq!(received.iter().collect::<HashSet<_>>().len(), 45);
}

both_backends!(non_members_cannot_send_or_read);
async fn non_members_cannot_send_or_read(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;

    let send = app
        .send_message(&mallory, conversation_id, "let me in")
        .await;
    assert_eq!(send.status, StatusCode::NOT_FOUND, "{:?}", send.body);
    let read = app
        .request(
            Method::GET,
            &format!("/v1/messages?conversation_id={conversation_id}"),
            Some(&mallory.access_token),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{:?}", read.body);

    let unknown = app.send_message(&alice, Uuid::new_v4(), "hello").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

both_backends!(invalid_messages_are_rejected);
async fn invalid_messages_are_rejected(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;

    let cases = [
        (
            json!({"conversation_id": conversation_id, "content": "", "message_type": "text"}),
            StatusCode::BAD_REQUEST,
            "empty content",
        ),
        (
            json!({"conversation_id": conversation_id, "content": "hi", "message_type": "audio"}),
            StatusCode::BAD_REQUEST,
            "unknown type",
        ),
        (
            json!({"conversation_id": "nope", "content": "hi", "message_type": "text"}),
            StatusCode::BAD_REQUEST,
            "bad uuid",
        ),
        (
            json!({"conversation_id": conversation_id, "content": 42, "message_type": "text"}),
            StatusCode::BAD_REQUEST,
            "wrong type",
        ),
        (
            json!({"conversation_id": conversation_id, "message_type": "text"}),
            StatusCode::BAD_REQUEST,
            "missing content",
        ),
        (
            json!({"conversation_id": conversation_id, "content": "hi", "message_type": "text", "metadata": {"nested": {"a": 1}}}),
            StatusCode::BAD_REQUEST,
            "nested metadata",
        ),
        (
            json!({"conversation_id": conversation_id, "content": "hi", "message_type": "text", "metadata": [1, 2]}),
            StatusCode::BAD_REQUEST,
            "metadata not an object",
        ),
        (
            json!({"conversation_id": conversation_id, "content": "x".repeat(70_000), "message_type": "text"}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "oversized content",
        ),
    ];
    for (body, status, case) in cases {
        let response = app
            .request(
                Method::POST,
                "/v1/messages",
                Some(&alice.access_token),
                Some(body),
            )
            .await;
        assert_eq!(response.status, status, "{case}: {:?}", response.body);
        assert!(!response.error_message().is_empty(), "{case}");
    }

    // The server answers before reading the whole body and drops the connection, so this
    // request gets a client of its own rather than poisoning the shared connection pool.
    let huge_body = crate::harness::send(
        &reqwest::Client::new(),
        Method::POST,
        &app.url("/v1/messages"),
        Some(&alice.access_token),
        Some(json!({"conversation_id": conversation_id, "content": "x".repeat(2_000_000), "message_type": "text"})),
    )
    .await;
    assert_eq!(huge_body.status, StatusCode::PAYLOAD_TOO_LARGE);

    let bad_queries = [
        format!("/v1/messages?conversation_id={conversation_id}&limit=0"),
        format!("/v1/messages?conversation_id={conversation_id}&limit=abc"),
        format!("/v1/messages?conversation_id={conversation_id}&page_state=%%%"),
        "/v1/messages?conversation_id=bad".to_owned(),
        "/v1/messages".to_owned(),
    ];
    for path in bad_queries {
        let response = app
            .request(Method::GET, &path, Some(&alice.access_token), None)
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{path}: {:?}",
            response.body
        );
    }

    // Nothing above was stored.
    let page = app
        .request(
            Method::GET,
            &format!("/v1/messages?conversation_id={conversation_id}"),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(page.data()["messages"], json!([]));
}

both_backends!(metadata_and_encryption_flag_round_trip);
async fn metadata_and_encryption_flag_round_trip(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;

    let sent = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&alice.access_token),
            Some(json!({
                "conversation_id": conversation_id,
                "content": "Y2lwaGVydGV4dA==",
                "is_encrypted": true,
                "message_type": "file",
                "metadata": {"file_name": "a.pdf", "size": 1024, "preview": false},
            })),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);

    // Bob did not write the message, so he names the position to wait for.
    let position = sent.event_position().expect("X-Event-Position is set");
    let page = app
        .client
        .get(app.url(&format!("/v1/messages?conversation_id={conversation_id}")))
        .bearer_auth(&bob.access_token)
        .header("x-min-position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body: serde_json::Value = page.json().await.unwrap();
    let message = &body["data"]["messages"][0];
    assert_eq!(message["is_encrypted"], true);
    assert_eq!(message["message_type"], "file");
    assert_eq!(
        message["metadata"],
        json!({"file_name": "a.pdf", "size": 1024, "preview": false})
    );

    let by_alice = app
        .request(
            Method::GET,
            &format!("/v1/messages?conversation_id={conversation_id}"),
            Some(&alice.access_token),
            None,
        )
        .await;
    let message = &by_alice.data()["messages"][0];
    assert_eq!(message["content"], "Y2lwaGVydGV4dA==");
    assert_eq!(message["metadata"]["size"], 1024);
}

both_backends!(min_position_beyond_log_head_is_rejected);
async fn min_position_beyond_log_head_is_rejected(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;

    for (value, status) in [
        ("999999999", StatusCode::BAD_REQUEST),
        ("-1", StatusCode::BAD_REQUEST),
        ("abc", StatusCode::BAD_REQUEST),
        ("1", StatusCode::OK),
    ] {
        let response = app
            .client
            .get(app.url("/v1/conversations"))
            .bearer_auth(&alice.access_token)
            .header("x-min-position", value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "X-Min-Position {value}");
    }
}
