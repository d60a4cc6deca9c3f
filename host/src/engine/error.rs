//! The engine's errors: why a policy could not be loaded, and what went wrong in a call.

use std::fmt;

/// Why a policy could not be loaded or swapped in.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Malformed(String),
    /// The component imports something the host does not offer.
    #[error(
        "component needs imports shardcast does not offer (policies may import only shardcast:policy and WASI): {0}"
    )]
    Link(String),
    /// The component does not export the world the slot needs.
    #[error("wrong world: {0}")]
    WrongWorld(String),
    /// The settings (or the `[limits]` table in them) are invalid.
    #[error("{0}")]
    Settings(String),
    /// The policy faulted while being loaded (in `describe`, `configure` or `restore`).
    #[error("{0}")]
    Fault(Fault),
    /// The wasmtime runtime itself could not be set up.
    #[error("wasmtime runtime: {0}")]
    Runtime(String),
}

/// Collapse a multi-line error message onto one line, cleaned: such messages can quote
/// names from the component (exports, functions), which its author chose.
pub fn one_line(message: &str) -> String {
    let joined = message.split_whitespace().collect::<Vec<_>>().join(" ");
    super::text::clean(&joined, super::text::MAX_MESSAGE)
}

/// What kind of misbehaviour a fault was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The policy trapped (panic, unreachable, out-of-bounds access, ...).
    Trap,
    /// The call ran past its epoch deadline.
    Timeout,
    /// The policy tried to grow its memory past the cap.
    MemoryLimit,
    /// The call returned something the host will not use (too many items, NaN, unknown ids).
    AbsurdOutput,
    /// The policy asked to wait (a WASI poll or block on something not ready).
    #[serde(rename = "blocking-call")]
    Blocking,
}

impl FaultKind {
    /// Every kind, for counters.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Trap,
        FaultKind::Timeout,
        FaultKind::MemoryLimit,
        FaultKind::AbsurdOutput,
        FaultKind::Blocking,
    ];

    /// A short name, e.g. `memory-limit`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::MemoryLimit => "memory-limit",
            FaultKind::AbsurdOutput => "absurd-output",
            FaultKind::Blocking => "blocking-call",
        }
    }
}

/// A policy call that failed. The store it ran in must be discarded.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The export that was called, e.g. `plan`.
    pub call: &'static str,
    /// `name@version` of the policy.
    pub policy: String,
    /// A sentence naming the problem and what to do.
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {}: {} in {}(): {}",
            self.policy,
            self.kind.name(),
            self.call,
            self.detail
        )
    }
}

impl std::error::Error for Fault {}
