//! The chat socket: handshake checks and tickets, `chat` frames for messages sent over REST,
//! typing and presence between sockets, client frames the server rejects, size and liveness
//! limits, revocation and shutdown, and delivery across two API nodes on NATS.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use secureconnect_api::app::ServerRole;
use secureconnect_api::config::Settings;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::both_backends;
use crate::harness::{
    BackendGuard, TEST_TIMEOUT, TestApp, TestBackend, TestNode, TestUser, spawn_app,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that should arrive.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an app whose settings `configure` adjusts first, such as small liveness limits.
async fn spawn_app_with(backend: TestBackend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let guard = BackendGuard::create(backend).await;
    let mut settings = guard.settings();
    configure(&mut settings);
    let node = TestNode::start(settings, ServerRole::Serve).await;
    TestApp {
        node,
        client: reqwest::Client::builder()
            .timeout(TEST_TIMEOUT)
            .build()
            .unwrap(),
        guard,
    }
}

fn chat_url(node: &TestNode, query: &str) -> String {
    format!("ws://{}/v1/ws/chat?{query}", node.address)
}

/// The status and envelope of a handshake the server rejected.
#[derive(Debug)]
struct Rejection {
    status: u16,
    body: Value,
}

impl Rejection {
    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// A handshake that must be rejected with `status` and the envelope error `code`.
struct HandshakeCase<'a> {
    name: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    status: u16,
    code: &'a str,
}

impl<'a> HandshakeCase<'a> {
    fn new(
        name: &'a str,
        query: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        status: u16,
        code: &'a str,
    ) -> HandshakeCase<'a> {
        HandshakeCase {
            name,
            query,
            headers,
            status,
            code,
        }
    }
}

fn expect_rejected(result: Result<Socket, Rejection>, case: &str) -> Rejection {
    match result {
        Ok(_) => panic!("{case}: the socket opened"),
        Err(rejection) => rejection,
    }
}

async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, Rejection> {
    let mut request = url.into_client_request().expect("invalid socket URL");
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
    let connected = tokio::time::timeout(TEST_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("timed out opening the socket");
    match connected {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|bytes| serde_json::from_slice(bytes).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Err(Rejection { status, body })
        }
        Err(other) => panic!("failed to open the socket: {other}"),
    }
}

/// Opens the chat socket of `conversation_id` as `user` with the Authorization header.
async fn connect(node: &TestNode, conversation_id: Uuid, user: &TestUser) -> Socket {
    let url = chat_url(node, &format!("conversation_id={conversation_id}"));
    let bearer = format!("Bearer {}", user.access_token);
    try_connect(&url, &[("authorization", &bearer)])
        .await
        .unwrap_or_else(|rejection| panic!("socket rejected: {rejection:?}"))
}

/// Reads the next text frame as JSON, skipping pings and pongs. Panics on a close frame.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(FRAME_TIMEOUT, socket.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended while waiting for a frame")
            .expect("socket failed while waiting for a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads frames until one has `type` equal to `frame_type`, skipping others such as presence.
async fn next_frame_of_type(socket: &mut Socket, frame_type: &str) -> Value {
    loop {
        let frame = next_frame(socket).await;
        if frame["type"] == frame_type {
            return frame;
        }
    }
}

/// Reads until the server's close frame and returns it.
async fn expect_close(socket: &mut Socket) -> CloseFrame {
    loop {
        let message = tokio::time::timeout(FRAME_TIMEOUT, socket.next())
            .await
            .expect("timed out waiting for the close frame")
            .expect("socket ended without a close frame")
            .expect("socket failed before the close frame");
        if let Message::Close(frame) = message {
            return frame.expect("close frame without a code");
        }
    }
}

async fn send_json(socket: &mut Socket, frame: Value) {
    tokio::time::timeout(TEST_TIMEOUT, socket.send(Message::text(frame.to_string())))
        .await
        .expect("timed out sending a frame")
        .expect("failed to send a frame");
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a timestamp, got {value}"))
        .parse()
        .unwrap()
}

both_backends!(member_receives_sent_message);
async fn member_receives_sent_message(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &bob).await;

    let sent = app.send_message(&alice, conversation_id, "hello bob").await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);

    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["type"], "chat");
    assert_eq!(frame["message_id"], sent.data()["message_id"]);
    assert_eq!(frame["conversation_id"], conversation_id.to_string());
    assert_eq!(frame["sender_id"], alice.user_id.to_string());
    assert_eq!(frame["content"], "hello bob");
    assert_eq!(frame["is_encrypted"], false);
    assert_eq!(frame["message_type"], "text");
    assert_eq!(frame["position"].as_u64(), sent.event_position());
    let frame_time = parse_time(&frame["timestamp"]);
    let sent_at = parse_time(&sent.data()["sent_at"]);
    assert_eq!(frame_time.trunc_subsecs(6), sent_at.trunc_subsecs(6));
}

both_backends!(hundred_messages_arrive_in_order);
async fn hundred_messages_arrive_in_order(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &bob).await;

    let mut sent = Vec::new();
    for index in 0..100 {
        let response = app
            .send_message(&alice, conversation_id, &format!("message {index}"))
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        sent.push(response.data()["message_id"].clone());
    }

    let mut received = Vec::new();
    for _ in 0..100 {
        let frame = next_frame_of_type(&mut socket, "chat").await;
        received.push(frame["message_id"].clone());
    }
    assert_eq!(received, sent);
}

both_backends!(handshake_rejects_bad_requests);
async fn handshake_rejects_bad_requests(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let alice_bearer = format!("Bearer {}", alice.access_token);
    let mallory_bearer = format!("Bearer {}", mallory.access_token);
    let valid_query = format!("conversation_id={conversation_id}");
    let url_token_query = format!(
        "conversation_id={conversation_id}&token={}",
        alice.access_token
    );
    let unknown_query = format!("conversation_id={}", Uuid::new_v4());

    let alice_header = ("authorization", alice_bearer.as_str());
    let mallory_header = ("authorization", mallory_bearer.as_str());
    let ticket_query = format!("{valid_query}&ticket=AAAA");
    let cases = [
        HandshakeCase::new(
            "non-member",
            &valid_query,
            vec![mallory_header],
            404,
            "NOT_FOUND",
        ),
        HandshakeCase::new(
            "unknown conversation",
            &unknown_query,
            vec![alice_header],
            404,
            "NOT_FOUND",
        ),
        HandshakeCase::new("missing token", &valid_query, vec![], 401, "UNAUTHORIZED"),
        HandshakeCase::new(
            "malformed token",
            &valid_query,
            vec![("authorization", "Bearer nonsense")],
            401,
            "UNAUTHORIZED",
        ),
        HandshakeCase::new(
            "token in the URL",
            &url_token_query,
            vec![],
            401,
            "UNAUTHORIZED",
        ),
        HandshakeCase::new("unknown ticket", &ticket_query, vec![], 401, "UNAUTHORIZED"),
        HandshakeCase::new(
            "bad conversation_id",
            "conversation_id=not-a-uuid",
            vec![alice_header],
            400,
            "VALIDATION_ERROR",
        ),
        HandshakeCase::new(
            "missing conversation_id",
            "",
            vec![alice_header],
            400,
            "VALIDATION_ERROR",
        ),
        HandshakeCase::new(
            "disallowed origin",
            &valid_query,
            vec![alice_header, ("origin", "https://evil.example")],
            403,
            "FORBIDDEN",
        ),
        HandshakeCase::new(
            "header and ticket",
            &ticket_query,
            vec![alice_header],
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for case in cases {
        let url = chat_url(&app.node, case.query);
        let rejection = expect_rejected(try_connect(&url, &case.headers).await, case.name);
        assert_eq!(
            rejection.status, case.status,
            "{}: {:?}",
            case.name, rejection.body
        );
        assert_eq!(
            rejection.error_code(),
            case.code,
            "{}: {:?}",
            case.name,
            rejection.body
        );
    }

    let allowed_origin = try_connect(
        &chat_url(&app.node, &valid_query),
        &[
            ("authorization", &alice_bearer),
            ("origin", "http://localhost:3000"),
        ],
    )
    .await;
    assert!(allowed_origin.is_ok(), "allowed origin: {allowed_origin:?}");
}

both_backends!(ticket_opens_one_socket);
async fn ticket_opens_one_socket(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;

    let anonymous = app
        .request(Method::POST, "/v1/ws/tickets", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let issued = app
        .request(
            Method::POST,
            "/v1/ws/tickets",
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{:?}", issued.body);
    let ticket = issued.data()["ticket"].as_str().unwrap().to_owned();
    assert_eq!(ticket.len(), 43, "{ticket}");
    assert_eq!(issued.data()["expires_in"], 30);

    let url = chat_url(
        &app.node,
        &format!("conversation_id={conversation_id}&ticket={ticket}"),
    );
    let mut socket = try_connect(&url, &[])
        .await
        .unwrap_or_else(|rejection| panic!("ticket rejected: {rejection:?}"));
    let sent = app
        .send_message(&alice, conversation_id, "over a ticket")
        .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["message_id"], sent.data()["message_id"]);

    let reused = try_connect(&url, &[]).await;
    let rejection = expect_rejected(reused, "second use of a ticket");
    assert_eq!(rejection.status, 401, "{:?}", rejection.body);
}

both_backends!(revoked_session_is_rejected_and_closed);
async fn revoked_session_is_rejected_and_closed(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut open_socket = connect(&app.node, conversation_id, &alice).await;
    let issued = app
        .request(
            Method::POST,
            "/v1/ws/tickets",
            Some(&alice.access_token),
            None,
        )
        .await;
    let ticket = issued.data()["ticket"].as_str().unwrap().to_owned();

    let logout = app
        .request(
            Method::POST,
            "/v1/auth/logout",
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(logout.status, StatusCode::OK, "{:?}", logout.body);

    let close = expect_close(&mut open_socket).await;
    assert_eq!(u16::from(close.code), 1008, "{close:?}");

    let bearer = format!("Bearer {}", alice.access_token);
    let query = format!("conversation_id={conversation_id}");
    let with_token = try_connect(&chat_url(&app.node, &query), &[("authorization", &bearer)]).await;
    assert_eq!(expect_rejected(with_token, "revoked token").status, 401);

    let ticket_query = format!("{query}&ticket={ticket}");
    let with_ticket = try_connect(&chat_url(&app.node, &ticket_query), &[]).await;
    assert_eq!(expect_rejected(with_ticket, "revoked ticket").status, 401);
}

both_backends!(typing_reaches_others_not_sender);
async fn typing_reaches_others_not_sender(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut alice_socket = connect(&app.node, conversation_id, &alice).await;
    let mut bob_socket = connect(&app.node, conversation_id, &bob).await;
    next_frame_of_type(&mut alice_socket, "user_joined").await;

    let forged_sender = Uuid::new_v4();
    send_json(
        &mut alice_socket,
        json!({"type": "typing", "sender_id": forged_sender, "timestamp": "yesterday"}),
    )
    .await;
    let typing = next_frame_of_type(&mut bob_socket, "typing").await;
    assert_eq!(typing["sender_id"], alice.user_id.to_string());
    assert_eq!(typing["conversation_id"], conversation_id.to_string());
    assert!(typing.get("connection_id").is_none(), "{typing}");
    let age = Utc::now() - parse_time(&typing["timestamp"]);
    assert!(age < chrono::Duration::seconds(30), "{typing}");

    let message_id = Uuid::new_v4();
    send_json(
        &mut bob_socket,
        json!({"type": "read", "message_id": message_id}),
    )
    .await;
    // Alice published her typing frame before Bob's read frame on the same bus, so had her
    // own frame come back it would arrive first.
    let frame = next_frame(&mut alice_socket).await;
    assert_eq!(frame["type"], "read", "{frame}");
    assert_eq!(frame["sender_id"], bob.user_id.to_string());
    assert_eq!(frame["message_id"], message_id.to_string());
}

both_backends!(presence_reaches_connected_member);
async fn presence_reaches_connected_member(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut bob_socket = connect(&app.node, conversation_id, &bob).await;

    let mut alice_socket = connect(&app.node, conversation_id, &alice).await;
    let joined = next_frame(&mut bob_socket).await;
    assert_eq!(joined["type"], "user_joined", "{joined}");
    assert_eq!(joined["sender_id"], alice.user_id.to_string());
    assert_eq!(joined["conversation_id"], conversation_id.to_string());
    parse_time(&joined["timestamp"]);

    alice_socket.close(None).await.unwrap();
    let left = next_frame(&mut bob_socket).await;
    assert_eq!(left["type"], "user_left", "{left}");
    assert_eq!(left["sender_id"], alice.user_id.to_string());
}

both_backends!(rejected_client_frames_keep_socket_open);
async fn rejected_client_frames_keep_socket_open(backend: TestBackend) {
    let app = spawn_app(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &alice).await;

    let cases = [
        (
            Message::text(r#"{"type":"chat","content":"hi"}"#),
            "UNSUPPORTED_FRAME_TYPE",
            "POST /v1/messages",
        ),
        (
            Message::text("{not json"),
            "INVALID_FRAME",
            "not valid JSON",
        ),
        (
            Message::text(r#"{"type":"dance"}"#),
            "UNSUPPORTED_FRAME_TYPE",
            "dance",
        ),
        (
            Message::text(r#"{"type":"read"}"#),
            "INVALID_FRAME",
            "message_id",
        ),
        (Message::binary(vec![1, 2, 3]), "INVALID_FRAME", "binary"),
    ];
    for (message, code, fragment) in cases {
        let case = format!("{message:?}");
        socket.send(message).await.unwrap();
        let reply = next_frame(&mut socket).await;
        assert_eq!(reply["type"], "error", "{case}: {reply}");
        assert_eq!(reply["code"], code, "{case}: {reply}");
        let text = reply["message"].as_str().unwrap();
        assert!(text.contains(fragment), "{case}: {reply}");
    }

    let sent = app
        .send_message(&alice, conversation_id, "still here")
        .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame["message_id"], sent.data()["message_id"]);
}

both_backends!(oversized_frame_closes_socket);
async fn oversized_frame_closes_socket(backend: TestBackend) {
    let app = spawn_app_with(backend, |settings| {
        settings.websocket.max_frame_bytes = 1024
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &alice).await;

    let padding = "x".repeat(4096);
    send_json(&mut socket, json!({"type": "typing", "padding": padding})).await;
    let close = expect_close(&mut socket).await;
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
}

both_backends!(responsive_idle_socket_stays_open);
async fn responsive_idle_socket_stays_open(backend: TestBackend) {
    let app = spawn_app_with(backend, |settings| {
        settings.websocket.ping_interval_secs = 1;
        settings.websocket.idle_timeout_secs = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &alice).await;

    // Read (and so reply to pings) without sending any data frame for over twice the timeout.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut pings = 0;
    while let Ok(message) = tokio::time::timeout_at(until, socket.next()).await {
        match message.expect("socket ended").expect("socket failed") {
            Message::Ping(_) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 3, "received {pings} pings in 5 seconds");

    send_json(&mut socket, json!({"type": "dance"})).await;
    let reply = next_frame(&mut socket).await;
    assert_eq!(
        reply["type"], "error",
        "socket should still answer: {reply}"
    );
}

both_backends!(unresponsive_socket_is_closed);
async fn unresponsive_socket_is_closed(backend: TestBackend) {
    let app = spawn_app_with(backend, |settings| {
        settings.websocket.ping_interval_secs = 1;
        settings.websocket.idle_timeout_secs = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &alice).await;

    // Not reading means tungstenite sends no pongs, so the server hears nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let close = expect_close(&mut socket).await;
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_socket_with_going_away() {
    let app = spawn_app(TestBackend::Embedded).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let mut socket = connect(&app.node, conversation_id, &alice).await;

    let TestApp { node, guard, .. } = app;
    node.stop().await.expect("node failed while stopping");
    let close = expect_close(&mut socket).await;
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cross_api_nodes() {
    let app = spawn_app(TestBackend::NatsPostgres).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let conversation_id = app.create_direct_conversation(&alice, &bob).await;
    let second_node = TestNode::start(app.guard.settings(), ServerRole::Api).await;
    wait_until_ready(&app, &second_node).await;

    let mut alice_socket = connect(&app.node, conversation_id, &alice).await;
    let mut bob_socket = connect(&second_node, conversation_id, &bob).await;
    let joined = next_frame_of_type(&mut alice_socket, "user_joined").await;
    assert_eq!(joined["sender_id"], bob.user_id.to_string());

    let sent = app
        .send_message(&alice, conversation_id, "across nodes")
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let frame = next_frame_of_type(&mut bob_socket, "chat").await;
    assert_eq!(frame["message_id"], sent.data()["message_id"]);
    assert_eq!(frame["content"], "across nodes");

    send_json(&mut alice_socket, json!({"type": "typing"})).await;
    let typing = next_frame_of_type(&mut bob_socket, "typing").await;
    assert_eq!(typing["sender_id"], alice.user_id.to_string());
}

/// Waits until `node` reports ready, so its log follower has opened its feed.
async fn wait_until_ready(app: &TestApp, node: &TestNode) {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let response = app.client.get(node.url("/ready")).send().await;
        if response.is_ok_and(|response| response.status() == StatusCode::OK) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "second node not ready within {TEST_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
