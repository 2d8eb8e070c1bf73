//! Stream keys of the claims: lower-case hex of SHA-256 over the normalized value, which is 64
//! characters and so a valid aggregate id whatever the value contains.

use secureconnect_events::AggregateId;
use sha2::{Digest, Sha256};

use crate::input::{Email, Username};

/// Computes the key of a claim on an already normalized value.
pub fn claim_key(normalized_value: &str) -> AggregateId {
    let digest = Sha256::digest(normalized_value.as_bytes());
    AggregateId::new(hex::encode(digest))
        .expect("64 lower-case hex characters form a valid aggregate id")
}

/// Computes the key of the claim on an email address, which is already normalized by parsing.
pub fn email_claim_key(email: &Email) -> AggregateId {
    claim_key(email.as_str())
}

/// Computes the key of the claim on a username, which ignores case.
pub fn username_claim_key(username: &Username) -> AggregateId {
    claim_key(&username.normalized())
}
