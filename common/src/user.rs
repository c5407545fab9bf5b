//! The user a call acts for, as the services pass it to each other: the
//! `x-user-id` metadata key, holding the id percent-encoded (RFC 3986) so
//! that any id an issuer can produce (`josé`, `ünï`, 255 bytes of CJK)
//! survives gRPC metadata, which carries ASCII only. An ASCII id without
//! `%` is sent as it is.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

/// The metadata key naming the user a call acts for.
pub const USER_ID_METADATA: &str = "x-user-id";
/// Longest user id, in bytes of UTF-8.
pub const USER_ID_MAX_BYTES: usize = 255;

/// What is escaped: controls, `%` itself, and (always) every non-ASCII byte.
const ESCAPED: &AsciiSet = &CONTROLS.add(b'%');

/// The id a user is known by: trimmed, not blank, at most 255 bytes, no
/// control characters. `None` when `raw` is not one.
pub fn user_id(raw: &str) -> Option<&str> {
    let id = raw.trim();
    let ok = !id.is_empty() && id.len() <= USER_ID_MAX_BYTES && !id.chars().any(char::is_control);
    ok.then_some(id)
}

/// Marks `metadata` as acting for `user`; `None` when `user` is not a valid
/// user id.
pub fn set_user(metadata: &mut MetadataMap, user: &str) -> Option<()> {
    let encoded = utf8_percent_encode(user_id(user)?, ESCAPED).to_string();
    metadata.insert(USER_ID_METADATA, MetadataValue::try_from(encoded).ok()?);
    Some(())
}

/// The user `metadata` acts for; `None` when it names none, or not a valid
/// user id.
pub fn user_of(metadata: &MetadataMap) -> Option<String> {
    let raw = metadata.get(USER_ID_METADATA)?.to_str().ok()?;
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    user_id(&decoded).map(str::to_owned)
}

/// The metadata key of a user's token, as in HTTP.
const AUTHORIZATION: &str = "authorization";

/// The metadata key (and HTTP header) of the id that follows one request
/// through every service and into their logs.
pub const REQUEST_ID_METADATA: &str = "x-request-id";

/// Who a call acts for, as it is passed on to the next service: the user,
/// the user's token when the call came with one (so that a next service
/// that checks tokens can check it too), and the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    authorization: Option<MetadataValue<Ascii>>,
    request_id: Option<MetadataValue<Ascii>>,
}

impl Caller {
    /// `user`, with no token.
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            authorization: None,
            request_id: None,
        }
    }

    /// `user` with the `Authorization` value (`Bearer <JWT>`) it proved
    /// itself with; a value that cannot be metadata is left out.
    pub fn with_authorization(mut self, value: Option<&[u8]>) -> Self {
        self.authorization = value.and_then(|v| MetadataValue::try_from(v).ok());
        self
    }

    /// The id of the request this call is part of (left out when it cannot
    /// be metadata).
    pub fn with_request_id(mut self, id: Option<&[u8]>) -> Self {
        self.request_id = id.and_then(|v| MetadataValue::try_from(v).ok());
        self
    }

    /// The caller of an incoming call (see [`user_of`]).
    pub fn of(metadata: &MetadataMap) -> Option<Self> {
        Some(Self {
            user: user_of(metadata)?,
            authorization: metadata.get(AUTHORIZATION).cloned(),
            request_id: metadata.get(REQUEST_ID_METADATA).cloned(),
        })
    }

    /// `message` as a call made for this caller; `None` when the user is
    /// not a valid user id.
    pub fn request<T>(&self, message: T) -> Option<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        self.stamp(request.metadata_mut())?;
        Some(request)
    }

    /// Marks an outgoing call as made for this caller; `None` when the user
    /// is not a valid user id.
    pub fn stamp(&self, metadata: &mut MetadataMap) -> Option<()> {
        set_user(metadata, &self.user)?;
        if let Some(value) = &self.authorization {
            metadata.insert(AUTHORIZATION, value.clone());
        }
        if let Some(value) = &self.request_id {
            metadata.insert(REQUEST_ID_METADATA, value.clone());
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(user: &str) -> Option<String> {
        let mut metadata = MetadataMap::new();
        set_user(&mut metadata, user)?;
        user_of(&metadata)
    }

    #[test]
    fn any_valid_id_survives_metadata() {
        for user in ["demo", "josé", "ünï", "買い物", "100%", "a b", "%41", "🥛"] {
            assert_eq!(round_trip(user).as_deref(), Some(user), "{user}");
        }
        let longest = "é".repeat(USER_ID_MAX_BYTES / 2);
        assert_eq!(round_trip(&longest), Some(longest.clone()));
        // ASCII ids travel as they are: older clients keep working.
        let mut metadata = MetadataMap::new();
        set_user(&mut metadata, "user_42").unwrap();
        assert_eq!(metadata.get(USER_ID_METADATA).unwrap(), "user_42");
    }

    #[test]
    fn invalid_ids_are_refused_both_ways() {
        for user in [
            "",
            "   ",
            "a\nb",
            "a\u{0}b",
            &"x".repeat(USER_ID_MAX_BYTES + 1),
        ] {
            assert_eq!(round_trip(user), None, "{user:?}");
        }
        for raw in ["%FF", "a%0Ab", "%00", "  "] {
            let mut metadata = MetadataMap::new();
            metadata.insert(USER_ID_METADATA, raw.parse().unwrap());
            assert_eq!(user_of(&metadata), None, "{raw}");
        }
    }
}
