//! A policy's stdout, stderr and log import reach `tracing`, tagged with its name.
//!
//! In its own test binary: it installs a subscriber, which must not race other tests.

use shardcast_sdk::view::ViewSnapshot;
use shardcast_tests::{artifacts, engine_with};

#[test]
fn policy_output_goes_to_tracing_under_its_name() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut engine = engine_with(artifacts::HOSTILE, "mode = \"chatty\"");
        assert!(
            engine
                .tick(ViewSnapshot::synthetic(2, 4, 1, 2))
                .faults
                .is_empty()
        );
    });
    let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
    for line in [
        "hello from a policy's stdout",
        "hello from a policy's stderr",
        "hello through the logging import",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("policy=hostile@0.1.0"), "{text}");
}
