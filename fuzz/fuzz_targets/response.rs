//! Feeds arbitrary bytes to everything a SIP peer's answer goes through: stream framing, response
//! parsing, digest challenge parsing and the client transaction's matching. None may panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipwatch_probes::digest::{self, Challenge, Credentials};
use sipwatch_probes::message::{parse_response, stream_frame_len};
use sipwatch_probes::transaction::{
    ClientTransaction, Reliability, ResponseKey, Timers, TransactionKey,
};

fuzz_target!(|data: &[u8]| {
    let _ = stream_frame_len(data, 65_535);
    let Ok(head) = parse_response(data) else { return };
    let now = Instant::now();
    let key = TransactionKey {
        branch: "z9hG4bKfuzz".into(),
        method: "REGISTER".into(),
        call_id: "fuzz".into(),
        from_tag: "f".into(),
    };
    let mut tx: ClientTransaction<()> = ClientTransaction::new(
        key,
        bytes::Bytes::from_static(b"REGISTER sip:x SIP/2.0\r\n\r\n"),
        Reliability::Unreliable,
        Timers::default(),
        now,
    );
    let _ = tx.poll_transmit();
    let rkey = ResponseKey {
        branch: head.branch.clone(),
        cseq_method: head.cseq_method.clone(),
        call_id: head.call_id.clone(),
        from_tag: head.from_tag.clone(),
    };
    let _ = tx.handle_response(now + Duration::from_millis(1), &rkey, head.code, ());
    while tx.poll_event().is_some() {}
    let creds = Credentials::new("fuzz", "pw");
    for value in head.www_authenticate.iter().chain(&head.proxy_authenticate) {
        if let Ok(ch) = Challenge::parse(value) {
            let _ = digest::authorize(&ch, &creds, "REGISTER", "sip:x", b"", 1, "c").header_value();
        }
    }
});
