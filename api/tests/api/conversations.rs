//! Opening conversations and who may see them.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::both_backends;
use crate::harness::{TestBackend, spawn_app};

both_backends!(direct_conversation_is_visible_to_members_only);
async fn direct_conversation_is_visible_to_members_only(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;

    let created = app
        .request(
            Method::POST,
            "/v1/conversations",
            Some(&alice.access_token),
            Some(
                json!({"title": "Alice & Bob", "type": "direct", "participant_ids": [bob.user_id]}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let data = created.data();
    assert_eq!(data["type"], "direct");
    assert_eq!(data["is_e2ee_enabled"], true);
    assert_eq!(data["created_by"], alice.user_id.to_string());
    let participants = data["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2);
    let creator = participants
        .iter()
        .find(|participant| participant["user_id"] == alice.user_id.to_string())
        .expect("creator is a participant");
    assert_eq!(creator["role"], "admin");
    let conversation_id = data["conversation_id"].as_str().unwrap().to_owned();
    let position = created.event_position().expect("X-Event-Position is set");

    let by_alice = app
        .request(
            Method::GET,
            &format!("/v1/conversations/{conversation_id}"),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(by_alice.status, StatusCode::OK, "{:?}", by_alice.body);
    assert_eq!(by_alice.data()["title"], "Alice & Bob");

    // Bob did not write it, so he names the position he waits for.
    let by_bob = app
        .client
        .get(app.url(&format!("/v1/conversations/{conversation_id}")))
        .bearer_auth(&bob.access_token)
        .header("x-min-position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(by_bob.status(), StatusCode::OK);

    let listed = app
        .request(
            Method::GET,
            "/v1/conversations",
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.data()["conversations"].as_array().unwrap().len(), 1);

    let by_mallory = app
        .request(
            Method::GET,
            &format!("/v1/conversations/{conversation_id}"),
            Some(&mallory.access_token),
            None,
        )
        .await;
    assert_eq!(by_mallory.status, StatusCode::NOT_FOUND);
    let mallory_list = app
        .request(
            Method::GET,
            "/v1/conversations",
            Some(&mallory.access_token),
            None,
        )
        .await;
    assert_eq!(mallory_list.data()["conversations"], json!([]));
}

both_backends!(conversation_rules_are_enforced);
async fn conversation_rules_are_enforced(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;

    let cases = [
        (
            json!({"title": "x", "type": "direct", "participant_ids": [bob.user_id, carol.user_id]}),
            "direct with three",
        ),
        (
            json!({"title": "x", "type": "direct", "participant_ids": []}),
            "direct alone",
        ),
        (
            json!({"title": "x", "type": "group", "participant_ids": []}),
            "group alone",
        ),
        (
            json!({"title": "x", "type": "channel", "participant_ids": [bob.user_id]}),
            "unknown type",
        ),
        (
            json!({"title": "x", "type": "group", "participant_ids": ["not-a-uuid"]}),
            "bad uuid",
        ),
        (
            json!({"title": "x", "type": "group", "participant_ids": [Uuid::new_v4()]}),
            "unknown user",
        ),
        (
            json!({"title": "", "type": "group", "participant_ids": [bob.user_id]}),
            "empty title",
        ),
        (
            json!({"type": "group", "participant_ids": [bob.user_id]}),
            "missing title",
        ),
        (
            json!({"title": "x", "type": "group", "participant_ids": "bob"}),
            "wrong type",
        ),
    ];
    for (body, case) in cases {
        let response = app
            .request(
                Method::POST,
                "/v1/conversations",
                Some(&alice.access_token),
                Some(body),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{case}: {:?}",
            response.body
        );
        assert_eq!(response.error_code(), "VALIDATION_ERROR", "{case}");
    }

    let group = app
        .request(
            Method::POST,
            "/v1/conversations",
            Some(&alice.access_token),
            Some(json!({"title": "team", "type": "group", "participant_ids": [bob.user_id, carol.user_id], "is_e2ee_enabled": false})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{:?}", group.body);
    assert_eq!(group.data()["participants"].as_array().unwrap().len(), 3);
    assert_eq!(group.data()["is_e2ee_enabled"], false);

    let bad_path = app
        .request(
            Method::GET,
            "/v1/conversations/not-a-uuid",
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(bad_path.status, StatusCode::BAD_REQUEST);
    let unknown = app
        .request(
            Method::GET,
            &format!("/v1/conversations/{}", Uuid::new_v4()),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
