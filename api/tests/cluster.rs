//! The split deployment end to end, with real processes: two `api` nodes and one `project`
//! process of the `secureconnect` binary on one JetStream stream and one PostgreSQL database.
//! A listener on one node receives every message sent through the other, in order, and the
//! history pages back exactly, also after the projector is killed with SIGKILL and restarted.

#[path = "api/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use secureconnect_api::config::Settings;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use harness::{BackendGuard, TestBackend, TestUser, send};

const MESSAGES: usize = 1_000;

/// A `secureconnect` child process, killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(settings: &Settings, role: &str, port: Option<u16>) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_secureconnect"));
        command
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SECURECONNECT_LOG__FORMAT", "json")
            .env("SECURECONNECT_LOG__FILTER", "warn")
            .env(
                "SECURECONNECT_NATS__URL",
                settings.nats.url.as_deref().unwrap(),
            )
            .env(
                "SECURECONNECT_NATS__STREAM_NAME",
                &settings.nats.stream_name,
            )
            .env(
                "SECURECONNECT_NATS__SUBJECT_PREFIX",
                &settings.nats.subject_prefix,
            )
            .env(
                "SECURECONNECT_NATS__EPHEMERAL_PREFIX",
                &settings.nats.ephemeral_prefix,
            )
            .env(
                "SECURECONNECT_POSTGRES__URL",
                settings.postgres.url.as_ref().unwrap().expose_secret(),
            )
            .env("SECURECONNECT_POSTGRES__MAX_CONNECTIONS", "5")
            .env(
                "SECURECONNECT_AUTH__JWT_SECRET",
                settings.auth.jwt_secret.as_ref().unwrap().expose_secret(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(port) = port {
            command.env("SECURECONNECT_SERVER__LISTEN", format!("127.0.0.1:{port}"));
        }
        let child = command
            .spawn()
            .expect("failed to start the secureconnect binary");
        Process { child }
    }

    fn kill_hard(&mut self) {
        // std's kill sends SIGKILL on Unix: the process gets no chance to finish its batch.
        self.child.kill().expect("failed to kill the process");
        self.child.wait().expect("failed to reap the process");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not become healthy");
}

async fn register(client: &reqwest::Client, base: &str, name: &str) -> TestUser {
    let username = format!("{name}_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let email = format!("{username}@example.test");
    let password = format!("{name}-password-1");
    let response = send(
        client,
        Method::POST,
        &format!("{base}/v1/auth/register"),
        None,
        Some(json!({"email": email, "username": username, "password": password, "display_name": name})),
    )
    .await;
    assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
    TestUser {
        user_id: response.data()["user"]["user_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        username,
        email,
        password,
        access_token: response.data()["access_token"].as_str().unwrap().to_owned(),
        refresh_token: response.data()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_delivers_and_projects_every_message_exactly_once() {
    let guard = BackendGuard::create(TestBackend::NatsPostgres).await;
    let settings = guard.settings();
    let (port_a, port_b) = (free_port(), free_port());
    let _node_a = Process::spawn(&settings, "api", Some(port_a));
    let _node_b = Process::spawn(&settings, "api", Some(port_b));
    let mut projector = Process::spawn(&settings, "project", None);
    let node_a = format!("http://127.0.0.1:{port_a}");
    let node_b = format!("http://127.0.0.1:{port_b}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_until_healthy(&client, &node_a).await;
    wait_until_healthy(&client, &node_b).await;

    let alice = register(&client, &node_a, "alice").await;
    let bob = register(&client, &node_a, "bob").await;
    let mallory = register(&client, &node_b, "mallory").await;

    let created = send(
        &client,
        Method::POST,
        &format!("{node_a}/v1/conversations"),
        Some(&alice.access_token),
        Some(json!({"title": "a&b", "type": "direct", "participant_ids": [bob.user_id]})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let conversation_id = created.data()["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob listens through node B.
    let mut request =
        format!("ws://127.0.0.1:{port_b}/v1/ws/chat?conversation_id={conversation_id}")
            .into_client_request()
            .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", bob.access_token).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("bob's socket on node B failed to connect");

    // Alice sends through node A; the projector is killed with SIGKILL halfway.
    let mut sent_ids = Vec::with_capacity(MESSAGES);
    let mut last_position = 0;
    for index in 0..MESSAGES {
        if index == MESSAGES / 2 {
            projector.kill_hard();
            projector = Process::spawn(&settings, "project", None);
        }
        let response = send(
            &client,
            Method::POST,
            &format!("{node_a}/v1/messages"),
            Some(&alice.access_token),
            Some(json!({"conversation_id": conversation_id, "content": format!("message {index}"), "message_type": "text"})),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "message {index}: {:?}",
            response.body
        );
        sent_ids.push(response.data()["message_id"].as_str().unwrap().to_owned());
        last_position = response.event_position().expect("X-Event-Position is set");
    }

    let mut received_ids = Vec::with_capacity(MESSAGES);
    while received_ids.len() < MESSAGES {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {MESSAGES} frames arrived", received_ids.len()))
            .expect("socket closed early")
            .expect("socket failed");
        match frame {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "chat" {
                    assert_eq!(frame["sender_id"], alice.user_id.to_string());
                    received_ids.push(frame["message_id"].as_str().unwrap().to_owned());
                }
            }
            Message::Ping(payload) => socket.send(Message::Pong(payload)).await.unwrap(),
            _ => {}
        }
    }
    assert_eq!(
        received_ids, sent_ids,
        "the socket must receive every message once, in order"
    );

    // Paging through node B, which did not handle the sends, waits for the named position.
    let mut paged_ids = Vec::with_capacity(MESSAGES);
    let mut page_state = String::new();
    loop {
        let response = client
            .get(format!(
                "{node_b}/v1/messages?conversation_id={conversation_id}&limit=100&page_state={page_state}"
            ))
            .bearer_auth(&bob.access_token)
            .header("x-min-position", last_position.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        for message in body["data"]["messages"].as_array().unwrap() {
            paged_ids.push(message["message_id"].as_str().unwrap().to_owned());
        }
        if !body["data"]["has_more"].as_bool().unwrap() {
            break;
        }
        page_state = body["data"]["next_page_state"].as_str().unwrap().to_owned();
    }
    paged_ids.reverse();
    assert_eq!(
        paged_ids.len(),
        MESSAGES,
        "paging must return every message"
    );
    assert_eq!(
        paged_ids, sent_ids,
        "paging must return each message once, in send order"
    );

    // To a third user the conversation does not exist, on every route and on the socket.
    for (method, path, body) in [
        (
            Method::GET,
            format!("/v1/conversations/{conversation_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/messages?conversation_id={conversation_id}"),
            None,
        ),
        (
            Method::POST,
            "/v1/messages".to_owned(),
            Some(
                json!({"conversation_id": conversation_id, "content": "hi", "message_type": "text"}),
            ),
        ),
    ] {
        for base in [&node_a, &node_b] {
            let response = send(
                &client,
                method.clone(),
                &format!("{base}{path}"),
                Some(&mallory.access_token),
                body.clone(),
            )
            .await;
            assert_eq!(
                response.status,
                StatusCode::NOT_FOUND,
                "{method} {base}{path}"
            );
        }
    }
    let mut request =
        format!("ws://127.0.0.1:{port_a}/v1/ws/chat?conversation_id={conversation_id}")
            .into_client_request()
            .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", mallory.access_token).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
        other => panic!("mallory's socket must be refused with 404, got {other:?}"),
    }
}
