//! The RESP regression corpus: inputs that once looked dangerous (huge or negative
//! lengths, deep nesting, bare LFs, partial pipelines). Each must be answered without a
//! panic: parsed, asked for more, or refused with a protocol error. Add a file to
//! `tests/resp-corpus/` for every new case the property tests or a user find.

use bytes::BytesMut;
use shardcast::proxy::request::next_request;
use shardcast::proxy::resp::{Limits, frame_len};

#[test]
fn every_corpus_input_is_handled_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/resp-corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let limits = Limits::default();
        let framed = std::panic::catch_unwind(|| frame_len(&bytes, &limits));
        assert!(framed.is_ok(), "frame_len panicked on {}", path.display());
        let requests = std::panic::catch_unwind(|| {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut n = 0;
            while let Ok(Some(_)) = next_request(&mut buf, &limits) {
                n += 1;
                assert!(n < 1000, "no progress");
            }
        });
        assert!(
            requests.is_ok(),
            "next_request panicked on {}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 12, "the corpus is there: {seen} files");
}

#[test]
fn corpus_cases_get_the_expected_verdicts() {
    let limits = Limits::default();
    let read = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/resp-corpus")
                .join(name),
        )
        .expect("file")
    };
    assert!(frame_len(&read("huge-bulk-length.resp"), &limits).is_err());
    assert!(frame_len(&read("overflowing-length.resp"), &limits).is_err());
    assert!(frame_len(&read("deep-nesting.resp"), &limits).is_err());
    assert!(frame_len(&read("negative-length.resp"), &limits).is_err());
    assert_eq!(
        frame_len(&read("map-missing-value.resp"), &limits),
        Ok(None)
    );
    assert_eq!(
        frame_len(&read("attribute-without-value.resp"), &limits),
        Ok(None)
    );
    let mut buf = BytesMut::from(&read("null-argument.resp")[..]);
    assert!(
        next_request(&mut buf, &limits).is_err(),
        "a null bulk is not an argument"
    );
    let mut buf = BytesMut::from(&read("pipelined-partial.resp")[..]);
    assert!(next_request(&mut buf, &limits).expect("valid").is_some());
    assert_eq!(
        next_request(&mut buf, &limits),
        Ok(None),
        "the second request is partial"
    );
}
