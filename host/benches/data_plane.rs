//! The data plane's hot paths: splitting pipelined requests off a buffer, finding reply
//! boundaries, classifying commands, routing keys to instances, and passing the migration
//! gate; and large replies arriving over many reads (a 16 and a 64 MiB bulk, 250,000- and
//! 1,000,000-element arrays, bursts of 25,000 and 100,000 pub/sub messages), which must
//! cost time linear in their size.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shardcast::proxy::command::classify;
use shardcast::proxy::gate::{Gate, SlotState};
use shardcast::proxy::request::{Request, next_request};
use shardcast::proxy::resp::{FrameScanner, Limits, frame_len};
use shardcast::proxy::slot::slot;
use shardcast::topology::SegmentTable;

fn pipeline(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("key:{i}");
        out.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    out
}

fn codec(c: &mut Criterion) {
    let wire = pipeline(100);
    let limits = Limits::default();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(100));
    g.bench_function("split 100 pipelined GETs", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            let mut n = 0;
            while let Ok(Some(r)) = next_request(&mut buf, &limits) {
                n += r.args.len();
            }
            n
        })
    });
    let mut replies = Vec::new();
    for _ in 0..100 {
        replies.extend_from_slice(b"$10\r\n0123456789\r\n");
    }
    g.bench_function("find 100 reply boundaries", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok(Some(len)) = frame_len(&replies[at..], &limits) {
                at += len;
            }
            at
        })
    });
    g.finish();
}

fn router(c: &mut Criterion) {
    let table = SegmentTable::uniform(1024, &[0, 1, 2]);
    let requests: Vec<Request> = (0..100)
        .map(|i| {
            Request::from_args(vec![
                Bytes::from_static(b"GET"),
                Bytes::from(format!("user:{i}:profile")),
            ])
        })
        .collect();
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(100));
    g.bench_function("classify and route 100 GETs", |b| {
        b.iter(|| {
            requests
                .iter()
                .map(|r| match classify(r) {
                    shardcast::proxy::command::Class::Keyed(keys) => {
                        table.owner(slot(&r.args[keys[0]]))
                    }
                    _ => 0,
                })
                .sum::<u32>()
        })
    });
    g.finish();
}

/// What the migration machinery costs a request: a write counted in flight and released
/// (its slot open, then tracked by a migration), and a read's check of its slot.
fn gate(c: &mut Criterion) {
    let gate = Gate::new();
    let key = Bytes::from_static(b"user:1000:profile");
    let mut g = c.benchmark_group("gate");
    g.bench_function("write counted and released, slot open", |b| {
        b.iter(|| drop(gate.begin_write(0, &[&key])))
    });
    g.bench_function("read checks its slot", |b| {
        b.iter(|| gate.state(slot(&key)) == SlotState::Held)
    });
    let s = slot(&key);
    gate.set(s..=s, SlotState::Tracking);
    g.bench_function(
        "write counted and released, slot tracked (key recorded dirty)",
        |b| b.iter(|| drop(gate.begin_write(0, &[&key]))),
    );
    g.finish();
}

/// Feed `wire` to a scanner in 64 KiB reads, as a socket delivers it, splitting every
/// complete frame off the buffer: the work a connection does for what it receives.
fn receive(wire: &[u8]) -> usize {
    let mut scanner = FrameScanner::new(Limits::unbounded());
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut frames = 0;
    for chunk in wire.chunks(64 << 10) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(len)) = scanner.scan(&buf) {
            let _ = buf.split_to(len);
            frames += 1;
        }
    }
    frames
}

/// [`receive`] with a fresh scan from the start of the buffer on every read.
fn receive_rescanning(wire: &[u8]) -> usize {
    let limits = Limits::unbounded();
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut frames = 0;
    for chunk in wire.chunks(64 << 10) {
        buf.extend_from_slice(chunk);
        while let Ok(Some(len)) = frame_len(&buf, &limits) {
            let _ = buf.split_to(len);
            frames += 1;
        }
    }
    frames
}

fn bulk(bytes: usize) -> Vec<u8> {
    let mut out = format!("${bytes}\r\n").into_bytes();
    out.resize(out.len() + bytes, b'x');
    out.extend_from_slice(b"\r\n");
    out
}

fn array(elements: usize) -> Vec<u8> {
    let mut out = format!("*{elements}\r\n").into_bytes();
    for i in 0..elements {
        let v = format!("value:{i}");
        out.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    out
}

fn messages(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let payload = format!("payload-{i:08}");
        out.extend_from_slice(
            format!(
                "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
            .as_bytes(),
        );
    }
    out
}

fn large_replies(c: &mut Criterion) {
    let mut g = c.benchmark_group("large replies, 64 KiB reads");
    g.sample_size(10);
    for (name, wire) in [
        ("bulk 16 MiB", bulk(16 << 20)),
        ("bulk 64 MiB", bulk(64 << 20)),
        ("array 250k", array(250_000)),
        ("array 500k", array(500_000)),
        ("array 1M", array(1_000_000)),
        ("pubsub 25k messages", messages(25_000)),
        ("pubsub 100k messages", messages(100_000)),
    ] {
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| b.iter(|| receive(&wire)));
    }
    // The same arrival scanned afresh on every read, as before the scanner kept its place:
    // quadratic in the reply's size.
    for (name, wire) in [
        ("array 25k, rescanned per read", array(25_000)),
        ("array 100k, rescanned per read", array(100_000)),
    ] {
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| b.iter(|| receive_rescanning(&wire)));
    }
    g.finish();
}

criterion_group!(benches, codec, router, gate, large_replies);
criterion_main!(benches);
