//! Password hashing with argon2id on the blocking thread pool, bounded by a semaphore so that a
//! burst of logins cannot starve other blocking work.

use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier};
use tokio::sync::Semaphore;

pub struct PasswordHasher {
    /// Limits concurrent hash computations; each holds a blocking thread for tens of
    /// milliseconds.
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when an account does not exist, so that
    /// login takes about as long for unknown emails as for wrong passwords.
    dummy_hash: String,
}

impl PasswordHasher {
    pub async fn new(max_concurrent: usize) -> anyhow::Result<PasswordHasher> {
        let random_password = uuid::Uuid::new_v4().to_string();
        let dummy_hash =
            tokio::task::spawn_blocking(move || hash_blocking(&random_password)).await??;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash,
        })
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when `hash` is `None`
    /// (unknown account), in which case the result is always false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let account_exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let matches =
            tokio::task::spawn_blocking(move || verify_blocking(&password, &hash)).await??;
        Ok(matches && account_exists)
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    // The default parameters are argon2id, 19 MiB, 2 passes, 1 lane, and a random salt.
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|error| anyhow::anyhow!("failed to hash password: {error}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(hash)
        .map_err(|error| anyhow::anyhow!("stored password hash is malformed: {error}"))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_its_password() {
        let hasher = PasswordHasher::new(2).await.unwrap();
        let hash = hasher.hash("correct horse".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(
            hasher
                .verify("correct horse".to_owned(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".to_owned(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(2).await.unwrap();
        assert!(!hasher.verify("anything".to_owned(), None).await.unwrap());
    }
}
