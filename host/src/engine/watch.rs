//! Watching a policy directory: a changed `.wasm` file is proposed as a hot swap.
//!
//! Each watched file is bound to a slot's [`SwapHandle`] and its settings. Events are
//! debounced, then the file is read and proposed from the watcher's own thread, so
//! compiling never touches the tick path. A broken file is refused and logged; the running
//! version stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::SwapHandle;
use super::error::Error;

/// Quiet time after the last event before a file is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches policy files and proposes them on change. Stops when dropped.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
    _thread: std::thread::JoinHandle<()>,
}

/// One watched file.
#[derive(Clone)]
pub struct Binding {
    /// The slot the file feeds.
    pub handle: SwapHandle,
    /// The settings to configure it with.
    pub settings: String,
    /// A settings file read again at each change, so that a policy can be replaced by one
    /// that takes other settings (write the settings first, then the component); when
    /// absent or unreadable, `settings` is used.
    pub settings_file: Option<PathBuf>,
}

impl PolicyWatcher {
    /// Watch `dir`; a change to a file in `bindings` proposes it to its slot.
    pub fn start(dir: &Path, bindings: HashMap<PathBuf, Binding>) -> Result<Self, Error> {
        let bindings: HashMap<PathBuf, Binding> = bindings
            .into_iter()
            .map(|(path, b)| (std::fs::canonicalize(&path).unwrap_or(path), b))
            .collect();
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && (event.kind.is_create() || event.kind.is_modify())
                {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })
            .map_err(|e| Error::Runtime(format!("cannot watch {}: {e}", dir.display())))?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Runtime(format!("cannot watch {}: {e}", dir.display())))?;
        let thread = std::thread::Builder::new()
            .name("shardcast-watch".into())
            .spawn(move || debounce_and_propose(rx, bindings))
            .expect("spawning the policy watcher thread");
        Ok(PolicyWatcher {
            _watcher: watcher,
            _thread: thread,
        })
    }
}

fn debounce_and_propose(rx: mpsc::Receiver<PathBuf>, bindings: HashMap<PathBuf, Binding>) {
    let mut dirty: Vec<PathBuf> = Vec::new();
    // Quiet is counted from the last change to a watched file: changes to other files in
    // the directory (a log written beside the policy) must not put a swap off forever.
    let mut quiet_at = std::time::Instant::now();
    loop {
        let event = if dirty.is_empty() {
            rx.recv().map_err(|_| ())
        } else {
            let left = quiet_at.saturating_duration_since(std::time::Instant::now());
            rx.recv_timeout(left).map_err(|_| ())
        };
        match event {
            Ok(path) => {
                let path = std::fs::canonicalize(&path).unwrap_or(path);
                if bindings.contains_key(&path) {
                    quiet_at = std::time::Instant::now() + DEBOUNCE;
                    if !dirty.contains(&path) {
                        dirty.push(path);
                    }
                }
            }
            Err(()) if dirty.is_empty() => return,
            Err(()) => {
                for path in dirty.drain(..) {
                    let binding = &bindings[&path];
                    let settings = binding
                        .settings_file
                        .as_ref()
                        .and_then(|f| std::fs::read_to_string(f).ok())
                        .unwrap_or_else(|| binding.settings.clone());
                    match std::fs::read(&path) {
                        Ok(bytes) => match binding.handle.propose(&bytes, &settings) {
                            Ok(v) => {
                                tracing::info!(file = %path.display(), policy = %v.label(), "policy file changed; swap staged")
                            }
                            Err(e) => {
                                tracing::error!(file = %path.display(), error = %e, "policy file changed but was refused")
                            }
                        },
                        Err(e) => {
                            tracing::error!(file = %path.display(), error = %e, "cannot read changed policy file")
                        }
                    }
                }
            }
        }
    }
}
