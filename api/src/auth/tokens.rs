//! Access and refresh tokens: HS256 JWTs with issuer, audience and a `typ` claim, so that an
//! access token is never accepted where a refresh token is expected, or the reverse.
//!
//! An access token names its session (`sid`); it stops working when the session is revoked.
//! A refresh token names its session and a generation. The session aggregate accepts only
//! the current generation, and it revokes the whole session when an older one comes back.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ACCESS_TOKEN_TYPE: &str = "access";
const REFRESH_TOKEN_TYPE: &str = "refresh";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub typ: String,
    pub username: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub typ: String,
    /// The refresh generation this token carries; the session accepts only its current one.
    pub generation: u64,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token has expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("wrong token type: expected a {expected} token")]
    WrongType { expected: &'static str },
}

/// Signs and verifies tokens with one HMAC key shared by every API node.
pub struct TokenIssuer {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(
        secret: &[u8],
        issuer: String,
        audience: String,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<TokenIssuer, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[audience.as_str()]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        Ok(TokenIssuer {
            encoding_key: EncodingKey::from_secret(secret)?,
            decoding_key: DecodingKey::from_secret(secret)?,
            validation,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
        })
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Issues an access token and a refresh token of `generation` for a session.
    pub fn issue_pair(
        &self,
        user_id: Uuid,
        username: &str,
        session_id: Uuid,
        generation: u64,
        session_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> TokenPair {
        let issued_at = now.timestamp();
        let access = AccessClaims {
            sub: user_id,
            sid: session_id,
            typ: ACCESS_TOKEN_TYPE.to_owned(),
            username: username.to_owned(),
            role: "user".to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + self.access_ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
        };
        let refresh = RefreshClaims {
            sub: user_id,
            sid: session_id,
            typ: REFRESH_TOKEN_TYPE.to_owned(),
            generation,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: issued_at,
            nbf: issued_at,
            exp: session_expires_at.timestamp(),
            jti: Uuid::new_v4(),
        };
        TokenPair {
            access_token: self.sign(&access),
            refresh_token: self.sign(&refresh),
            token_type: "Bearer",
            expires_in: self.access_ttl.as_secs(),
        }
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = self.verify(token, ACCESS_TOKEN_TYPE)?;
        Ok(claims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let claims: RefreshClaims = self.verify(token, REFRESH_TOKEN_TYPE)?;
        Ok(claims)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        // HS256 signing of a serializable struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding_key)
            .expect("HS256 signing does not fail")
    }

    fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        expected_type: &'static str,
    ) -> Result<T, TokenError> {
        // The type is checked on the raw claims first, so a token of the other kind gets a
        // precise error rather than a missing-field one.
        let raw =
            jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding_key, &self.validation)
                .map_err(|error| match error.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                })?;
        if raw.claims.get("typ").and_then(|value| value.as_str()) != Some(expected_type) {
            return Err(TokenError::WrongType {
                expected: expected_type,
            });
        }
        serde_json::from_value(raw.claims).map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            &[7u8; 32],
            "secureconnect-auth".to_owned(),
            "secureconnect-api".to_owned(),
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    fn pair(issuer: &TokenIssuer, now: DateTime<Utc>) -> TokenPair {
        issuer.issue_pair(
            Uuid::new_v4(),
            "alice",
            Uuid::new_v4(),
            1,
            now + chrono::Duration::hours(1),
            now,
        )
    }

    #[test]
    fn access_token_round_trips() {
        let issuer = issuer();
        let tokens = pair(&issuer, Utc::now());
        let claims = issuer.verify_access(&tokens.access_token).unwrap();
        assert_eq!(claims.username, "alice");
        assert_eq!(claims.typ, "access");
    }

    #[test]
    fn refresh_token_is_rejected_as_access_token() {
        let issuer = issuer();
        let tokens = pair(&issuer, Utc::now());
        assert_eq!(
            issuer.verify_access(&tokens.refresh_token).unwrap_err(),
            TokenError::WrongType { expected: "access" }
        );
    }

    #[test]
    fn access_token_is_rejected_as_refresh_token() {
        let issuer = issuer();
        let tokens = pair(&issuer, Utc::now());
        assert_eq!(
            issuer.verify_refresh(&tokens.access_token).unwrap_err(),
            TokenError::WrongType {
                expected: "refresh"
            }
        );
    }

    #[test]
    fn expired_access_token_is_rejected() {
        let issuer = issuer();
        let tokens = pair(&issuer, Utc::now() - chrono::Duration::hours(2));
        assert_eq!(
            issuer.verify_access(&tokens.access_token).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn tampered_token_is_rejected() {
        let issuer = issuer();
        let tokens = pair(&issuer, Utc::now());
        let mut tampered = tokens.access_token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            issuer.verify_access(&tampered).unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn token_signed_with_other_key_is_rejected() {
        let other = TokenIssuer::new(
            &[9u8; 32],
            "secureconnect-auth".to_owned(),
            "secureconnect-api".to_owned(),
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
        .unwrap();
        let tokens = pair(&other, Utc::now());
        assert_eq!(
            issuer().verify_access(&tokens.access_token).unwrap_err(),
            TokenError::Invalid
        );
    }
}
