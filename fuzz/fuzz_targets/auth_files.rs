//! The auth file (userlist.txt, with its secrets) and the HBA file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pgwolf::auth::AuthFile::parse(text);
    let _ = pgwolf::auth::hba::Hba::parse(text);
});
