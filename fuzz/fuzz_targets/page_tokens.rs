//! Page tokens as clients send them back: any text is a position or
//! INVALID_ARGUMENT, and any position round-trips for its user and query
//! only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tool_service::domain::UserId;
use tool_service::grpc::page_token;

fuzz_target!(|input: (&str, [i64; 2], &str)| {
    let (token, position, query) = input;
    let (Some(alice), Some(bob)) = (UserId::parse("alice"), UserId::parse("bob")) else {
        return;
    };
    let _ = page_token::decode::<1>(&alice, query, token);
    let _ = page_token::decode::<2>(&alice, query, token);
    let encoded = page_token::encode(&alice, query, &position);
    assert_eq!(
        page_token::decode::<2>(&alice, query, &encoded).ok(),
        Some(Some(position))
    );
    assert!(page_token::decode::<2>(&bob, query, &encoded).is_err());
});
