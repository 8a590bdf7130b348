//! The config parsers: pgwolf's TOML and PgBouncer's ini, then validation
//! of whatever parsed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.conf");
    if let Ok(cfg) = pgwolf::config::from_toml_str(text, path) {
        let _ = pgwolf::config::validate(&cfg);
    }
    if let Ok((cfg, _warnings)) = pgwolf::config::from_pgbouncer_ini_str(text, path) {
        let _ = pgwolf::config::validate(&cfg);
    }
});
