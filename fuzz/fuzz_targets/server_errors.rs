//! What pgwolf reads of a server's ErrorResponse and NoticeResponse bodies
//! (PgBouncer's CVE-2026-6666 was a crash on one without a SQLSTATE): the
//! field parser and the error pgwolf makes of it, whose SQLSTATE must be
//! five digits or capitals and whose text is bounded, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pgwolf::protocol::backend::parse_error_fields;
use pgwolf::server::ServerError;

fuzz_target!(|body: &[u8]| {
    let _ = parse_error_fields(body);
    match ServerError::from_error_body(body) {
        ServerError::Server {
            severity,
            code,
            message,
        } => {
            assert_eq!(code.len(), 5);
            assert!(code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
            assert!(!severity.is_empty() && !message.is_empty());
            assert!(severity.chars().count() <= 1024 && message.chars().count() <= 1024);
        }
        other => panic!("not a server error: {other}"),
    }
});
