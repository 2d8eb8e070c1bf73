//! The HTTP edge shared by every route: the response envelope, the one API error type, request
//! ids, extractors that turn malformed input into clear 400s, and read-your-writes headers.

pub mod consistency;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod request_id;

pub use consistency::{Consistency, WithPosition};
pub use envelope::{Created, Envelope};
pub use error::ApiError;
pub use extract::{ValidJson, ValidPath, ValidQuery};
