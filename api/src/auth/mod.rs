//! Authentication: password hashing, signed access and refresh tokens, the set of revoked
//! sessions that every API node follows from the log, and the extractor that guards routes.

pub mod extractor;
pub mod passwords;
pub mod revocations;
pub mod tokens;

pub use extractor::AuthUser;
pub use passwords::PasswordHasher;
pub use revocations::RevokedSessions;
pub use tokens::{AccessClaims, RefreshClaims, TokenError, TokenIssuer, TokenPair};
