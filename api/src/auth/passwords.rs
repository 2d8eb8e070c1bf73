//! Password hashing with argon2id on a few dedicated threads.
//!
//! Each hash works through 19 MiB of memory. Allocated per hash, that memory was not given
//! back by glibc's malloc, and the release build grew by about 19 MiB with every
//! registration. So each worker allocates its argon2 memory once and reuses it, which bounds
//! the memory at one set of blocks per worker.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

enum HashJob {
    Hash {
        password: String,
        reply: oneshot::Sender<anyhow::Result<String>>,
    },
    Verify {
        password: String,
        hash: String,
        reply: oneshot::Sender<anyhow::Result<bool>>,
    },
}

pub struct PasswordHasher {
    /// Feeds the worker threads. The threads stop when this sender is dropped with the hasher.
    jobs: Mutex<mpsc::Sender<HashJob>>,
    /// A hash of a random password, verified against when an account does not exist, so that
    /// login takes about as long for unknown emails as for wrong passwords.
    dummy_hash: String,
}

impl PasswordHasher {
    /// Starts `workers` hashing threads; each computes one hash at a time.
    pub async fn new(workers: usize) -> anyhow::Result<PasswordHasher> {
        let (sender, receiver) = mpsc::channel::<HashJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers.max(1) {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || run_worker(&receiver))?;
        }
        let mut hasher = PasswordHasher {
            jobs: Mutex::new(sender),
            dummy_hash: String::new(),
        };
        hasher.dummy_hash = hasher.hash(uuid::Uuid::new_v4().to_string()).await?;
        Ok(hasher)
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let (reply, response) = oneshot::channel();
        self.submit(HashJob::Hash { password, reply })?;
        response.await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when `hash` is `None`
    /// (unknown account), in which case the result is always false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let account_exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let (reply, response) = oneshot::channel();
        self.submit(HashJob::Verify {
            password,
            hash,
            reply,
        })?;
        let matches = response.await??;
        Ok(matches && account_exists)
    }

    fn submit(&self, job: HashJob) -> anyhow::Result<()> {
        self.jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("password hashing workers failed"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("password hashing workers have stopped"))
    }
}

fn run_worker(receiver: &Mutex<mpsc::Receiver<HashJob>>) {
    let mut memory = vec![Block::default(); Params::default().block_count()];
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        // A dropped reply means the request was cancelled; its result is not needed.
        match job {
            Ok(HashJob::Hash { password, reply }) => {
                let _ = reply.send(hash_password(&password, &mut memory));
            }
            Ok(HashJob::Verify {
                password,
                hash,
                reply,
            }) => {
                let _ = reply.send(verify_password(&password, &hash, &mut memory));
            }
            Err(_) => return,
        }
    }
}

/// The maximum argon2 memory, in 1 KiB blocks, that a stored hash may require: 64 MiB.
const MAX_VERIFY_BLOCKS: usize = 64 * 1024;

/// Hashes with argon2id and the crate's default cost (19 MiB, 2 passes, 1 lane) and a random
/// 16-byte salt, into a PHC string.
fn hash_password(password: &str, memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let params = Params::default();
    let salt = argon2::password_hash::generate_salt();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut output,
            blocks(memory, params.block_count()),
        )
        .map_err(|error| anyhow::anyhow!("failed to hash password: {error}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|error| anyhow::anyhow!("failed to encode argon2 parameters: {error}"))?,
        salt: Some(Salt::new(&salt).map_err(|error| anyhow::anyhow!("invalid salt: {error}"))?),
        hash: Some(
            Output::new(&output).map_err(|error| anyhow::anyhow!("invalid output: {error}"))?,
        ),
    };
    Ok(phc.to_string())
}

/// Recomputes the hash of `password` with the algorithm, parameters and salt of `stored` and
/// compares the outputs in constant time.
fn verify_password(password: &str, stored: &str, memory: &mut Vec<Block>) -> anyhow::Result<bool> {
    let malformed = |reason: String| anyhow::anyhow!("stored password hash is malformed: {reason}");
    let parsed = PasswordHash::new(stored).map_err(|error| malformed(error.to_string()))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|error| malformed(error.to_string()))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|error| malformed(error.to_string()))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|error| malformed(error.to_string()))?;
    if params.block_count() > MAX_VERIFY_BLOCKS {
        return Err(malformed(format!(
            "memory cost of {} KiB is too high",
            params.m_cost()
        )));
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(malformed("salt or hash missing".to_owned()));
    };
    let mut output = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut output,
            blocks(memory, params.block_count()),
        )
        .map_err(|error| anyhow::anyhow!("failed to verify password: {error}"))?;
    let computed = Output::new(&output).map_err(|error| malformed(error.to_string()))?;
    Ok(computed == expected)
}

/// Returns the first `count` blocks of the worker's memory, growing it when a stored hash
/// needs more.
fn blocks(memory: &mut Vec<Block>, count: usize) -> &mut [Block] {
    if memory.len() < count {
        memory.resize(count, Block::default());
    }
    &mut memory[..count]
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

    #[test]
    fn hash_is_standard_phc_string() {
        use argon2::{PasswordHash as ParsedHash, PasswordVerifier};
        let mut memory = Vec::new();
        let hash = hash_password("correct horse", &mut memory).unwrap();
        let parsed = ParsedHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok(),
            "the argon2 crate must verify our PHC string: {hash}"
        );
    }

    #[test]
    fn verifies_hash_made_by_argon2_crate() {
        use argon2::PasswordHasher as _;
        let hash = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        let mut memory = Vec::new();
        assert!(verify_password("correct horse", &hash, &mut memory).unwrap());
        assert!(!verify_password("wrong horse", &hash, &mut memory).unwrap());
    }

    #[tokio::test]
    async fn concurrent_hashes_all_complete() {
        let hasher = PasswordHasher::new(2).await.unwrap();
        let hashes =
            futures::future::join_all((0..6).map(|index| hasher.hash(format!("password {index}"))))
                .await;
        for hash in hashes {
            assert!(hash.unwrap().starts_with("$argon2id$"));
        }
    }
}
