//! WASI's waits, made non-blocking: a policy may ask whether something is ready, never
//! wait for it.
//!
//! A wait inside a WASI import is host code, which the epoch deadline cannot interrupt: a
//! policy that calls `std::thread::sleep` would stop the tick loop for as long as it likes.
//! So `wasi:io/poll.poll` and `pollable.block` are replaced: they answer when something is
//! ready at once (a zero sleep, a clock already past) and trap otherwise. Every other WASI
//! import a policy can reach returns at once: its output streams are always ready (and
//! take at most 64 KiB a write), its input is empty, sockets and name lookups are denied,
//! random bytes are capped at 64 KiB a call and resources at 1,024 per instance.

use std::pin::pin;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::runtime::{poll_noop, with_ambient_tokio_runtime};
use wasmtime_wasi_io::poll::DynPollable;

use super::ctx::PolicyCtx;

/// The `wasi:io` version wasmtime-wasi 48 links; guests built against any 0.2.x resolve to
/// it. A wasmtime upgrade that links a newer 0.2.x must change this too: the hostile
/// policy's `sleep` tests fail until it does.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// Why a call trapped: the policy asked to wait.
#[derive(Debug)]
pub struct Blocked(pub &'static str);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the policy called {} on something not ready (e.g. std::thread::sleep); policies may not block",
            self.0
        )
    }
}

impl std::error::Error for Blocked {}

/// Poll `future` without waiting: twice, so that a pollable that yields once (a zero
/// sleep) still answers.
fn at_once<F: Future>(future: F) -> Option<F::Output> {
    with_ambient_tokio_runtime(|| {
        let mut future = pin!(future);
        poll_noop(future.as_mut()).or_else(|| poll_noop(future.as_mut()))
    })
}

/// Replace the blocking imports of `wasi:io/poll` in `linker`, which already holds WASI.
pub fn add_to_linker(linker: &mut Linker<PolicyCtx>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io::poll::{Host, HostPollable};
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store, (list,): (Vec<Resource<DynPollable>>,)| {
            let table = &mut store.data_mut().table;
            match at_once(Host::poll(table, list)) {
                Some(ready) => Ok((ready?,)),
                None => Err(wasmtime::Error::new(Blocked("wasi:io/poll.poll"))),
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store, (pollable,): (Resource<DynPollable>,)| {
            let table = &mut store.data_mut().table;
            match at_once(HostPollable::block(table, pollable)) {
                Some(done) => done,
                None => Err(wasmtime::Error::new(Blocked("wasi:io/poll.pollable.block"))),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
