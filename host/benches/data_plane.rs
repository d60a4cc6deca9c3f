//! The data plane's hot paths: splitting pipelined requests off a buffer, finding reply
//! boundaries, classifying commands, routing keys to instances, and passing the migration
//! gate.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shardcast::proxy::command::classify;
use shardcast::proxy::gate::{Gate, SlotState};
use shardcast::proxy::request::{Request, next_request};
use shardcast::proxy::resp::{Limits, frame_len};
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

criterion_group!(benches, codec, router, gate);
criterion_main!(benches);
