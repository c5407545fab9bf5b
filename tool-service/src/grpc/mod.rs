//! The gRPC face of tool-service: identity from metadata, page tokens, and
//! conversions between wire and stored types. Handlers live in `tasks` and
//! `conversations` and use `?` on [`crate::error::Error`].

mod conversations;
mod diagnostics;
mod tasks;
mod tools;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use tonic::Request;

pub use self::conversations::ConversationApi;
pub use self::diagnostics::DiagnosticsApi;
pub use self::tasks::TaskApi;
use crate::domain::UserId;
use crate::error::{Error, ValidationError};

/// Default and largest `page_size`.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// The user a call acts for; missing, blank or unreadable is UNAUTHENTICATED.
pub fn caller<T>(request: &Request<T>) -> Result<UserId, Error> {
    taskagent_common::user::user_of(request.metadata())
        .as_deref()
        .and_then(UserId::parse)
        .ok_or(Error::Unauthenticated)
}

/// `page_size` as AIP-158 has it: 0 means the default, larger than the
/// maximum is lowered to it, negative is an error.
fn page_size(requested: i32) -> Result<usize, Error> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
        Err(_) => Err(ValidationError::NegativePageSize.into()),
    }
}

/// Page tokens: a position in a list, bound to the user and the query that
/// produced it. The list queries filter by the caller anyway, so a token can
/// never reveal another user's rows; the binding makes a token used by another
/// user or with another filter an INVALID_ARGUMENT instead of a silent skip.
pub mod page_token {
    use super::*;

    pub fn encode(user: &UserId, query: &str, position: &[i64]) -> String {
        let mut text = format!("{:016x}", scope(user, query));
        for part in position {
            text.push('.');
            text.push_str(&part.to_string());
        }
        URL_SAFE_NO_PAD.encode(text)
    }

    /// The position in `token`, or `None` for an empty token (the first page).
    pub fn decode<const N: usize>(
        user: &UserId,
        query: &str,
        token: &str,
    ) -> Result<Option<[i64; N]>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::from(ValidationError::InvalidPageToken);
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split('.');
        if parts.next() != Some(format!("{:016x}", scope(user, query)).as_str()) {
            return Err(invalid());
        }
        let mut position = [0; N];
        for slot in &mut position {
            *slot = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(invalid)?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Some(position))
    }

    /// FNV-1a over user and query: stable across releases and processes.
    fn scope(user: &UserId, query: &str) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in user.as_str().bytes().chain([0]).chain(query.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }
}

/// A stored UTC time as a protobuf timestamp.
fn timestamp(time: NaiveDateTime) -> prost_types::Timestamp {
    let utc = time.and_utc();
    prost_types::Timestamp {
        seconds: utc.timestamp(),
        nanos: i32::try_from(utc.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Microseconds since the epoch, to carry a stored time in a page token.
fn micros(time: NaiveDateTime) -> i64 {
    time.and_utc().timestamp_micros()
}

fn from_micros(micros: i64) -> Result<NaiveDateTime, Error> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .ok_or_else(|| ValidationError::InvalidPageToken.into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any position round-trips for its user and query; any text at all
        /// is answered (a position or INVALID_ARGUMENT), never a panic; and
        /// a token never carries over to another user.
        #[test]
        fn page_tokens_hold_for_any_user_query_and_text(
            user in "\\PC{1,40}",
            other in "\\PC{1,40}",
            query in "\\PC{0,20}",
            position in any::<[i64; 2]>(),
            text in any::<String>(),
        ) {
            let (Some(user), Some(other)) = (UserId::parse(&user), UserId::parse(&other)) else {
                return Ok(());
            };
            let token = page_token::encode(&user, &query, &position);
            prop_assert_eq!(page_token::decode::<2>(&user, &query, &token).ok(), Some(Some(position)));
            if other != user {
                prop_assert!(page_token::decode::<2>(&other, &query, &token).is_err());
            }
            let _ = page_token::decode::<2>(&user, &query, &text);
            let _ = page_token::decode::<1>(&user, &query, &text);
        }
    }

    #[test]
    fn page_tokens_round_trip_and_stay_with_their_user_and_query() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let token = page_token::encode(&alice, "tasks/all", &[42]);
        assert_eq!(
            page_token::decode::<1>(&alice, "tasks/all", &token).unwrap(),
            Some([42])
        );
        assert!(page_token::decode::<1>(&bob, "tasks/all", &token).is_err());
        assert!(page_token::decode::<1>(&alice, "tasks/pending", &token).is_err());
        assert!(page_token::decode::<1>(&alice, "tasks/all", "garbage!").is_err());
        assert_eq!(
            page_token::decode::<1>(&alice, "tasks/all", "").unwrap(),
            None
        );
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
