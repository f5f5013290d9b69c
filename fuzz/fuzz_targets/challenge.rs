//! Feeds arbitrary bytes to the digest challenge parser as a header value, then to the realm
//! pin and the response computation: none may panic, and a pinned realm is never answered for
//! another realm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipwatch_probes::digest::{self, Challenge, Credentials};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Several header values, split as a response with repeated WWW-Authenticate would be.
    let values: Vec<&str> = text.split('\n').collect();
    for value in &values {
        if let Ok(ch) = Challenge::parse(value) {
            let creds = Credentials::new("fuzz", "pw");
            let _ = digest::authorize(&ch, &creds, "REGISTER", "sip:x", b"", 1, "c").header_value();
        }
    }
    let _ = digest::choose_from_headers(values.iter().copied());
    if let Ok(chosen) = digest::choose_for_realm(values.iter().copied(), Some("pinned.example")) {
        assert_eq!(chosen.realm, "pinned.example", "answered a realm that is not pinned");
    }
    let _ = digest::Authorization::parse(text);
});
