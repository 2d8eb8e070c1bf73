//! Sender preparation before the clock starts: one account per sender plus one shared peer,
//! and a direct conversation between each sender and the peer. Every sender so appends to its
//! own conversation, and no two senders contend for one aggregate.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// Registrations and conversation openings in flight at once. Registration hashes the
/// password with argon2id, which the server bounds on its own side as well.
const SETUP_CONCURRENCY: usize = 8;

/// A sender ready to go: its access token and its own conversation.
#[derive(Debug, Clone)]
pub struct Sender {
    pub access_token: String,
    pub conversation_id: Uuid,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Registered {
    access_token: String,
    user: RegisteredUser,
}

#[derive(Deserialize)]
struct RegisteredUser {
    user_id: Uuid,
}

#[derive(Deserialize)]
struct Opened {
    conversation_id: Uuid,
}

struct Account {
    access_token: String,
    user_id: Uuid,
}

/// Registers `count` senders and one peer, and opens a direct conversation from each sender
/// to the peer.
pub async fn prepare_senders(base_url: &str, count: u32) -> anyhow::Result<Vec<Sender>> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let run_tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let peer = register(&client, base_url, &format!("peer_{run_tag}")).await?;

    futures::stream::iter(0..count)
        .map(|index| {
            let client = &client;
            let peer_id = peer.user_id;
            let username = format!("sender{index}_{run_tag}");
            async move {
                let sender = register(client, base_url, &username).await?;
                let conversation_id =
                    open_conversation(client, base_url, &sender, peer_id, index).await?;
                Ok::<_, anyhow::Error>(Sender {
                    access_token: sender.access_token,
                    conversation_id,
                })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

async fn register(
    client: &reqwest::Client,
    base_url: &str,
    username: &str,
) -> anyhow::Result<Account> {
    let body = json!({
        "email": format!("{username}@bench.invalid"),
        "username": username,
        "password": "benchmark password 1234",
        "display_name": username,
    });
    let registered: Registered = post(client, base_url, "/v1/auth/register", None, &body)
        .await
        .with_context(|| format!("failed to register {username}"))?;
    Ok(Account {
        access_token: registered.access_token,
        user_id: registered.user.user_id,
    })
}

async fn open_conversation(
    client: &reqwest::Client,
    base_url: &str,
    sender: &Account,
    peer_id: Uuid,
    index: u32,
) -> anyhow::Result<Uuid> {
    let body = json!({
        "title": format!("bench {index}"),
        "type": "direct",
        "participant_ids": [peer_id],
    });
    let opened: Opened = post(
        client,
        base_url,
        "/v1/conversations",
        Some(&sender.access_token),
        &body,
    )
    .await
    .with_context(|| format!("failed to open the conversation of sender {index}"))?;
    Ok(opened.conversation_id)
}

async fn post<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    access_token: Option<&str>,
    body: &serde_json::Value,
) -> anyhow::Result<T> {
    let mut request = client.post(format!("{base_url}{path}")).json(body);
    if let Some(token) = access_token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {path} failed"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("failed to read the response of POST {path}"))?;
    if !status.is_success() {
        bail!("POST {path} returned {status}: {text}");
    }
    let envelope: Envelope<T> = serde_json::from_str(&text)
        .with_context(|| format!("unexpected response of POST {path}: {text}"))?;
    Ok(envelope.data)
}
