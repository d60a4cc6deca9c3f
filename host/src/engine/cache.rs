//! The on-disk cache of compiled policy artifacts.
//!
//! The key is the sha256 of wasmtime's compatibility hash (engine version and settings)
//! followed by the sha256 of the component's bytes, so a new wasmtime, new engine settings
//! or a changed component never reuses a stale artifact. Files are written to a temporary
//! name and renamed into place, so a crash never leaves a torn artifact under a real key.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::{Error, one_line};

/// A `Hasher` that feeds sha256, giving a hash stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiled artifacts in a directory, keyed by engine compatibility and component hash.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write) for artifacts of `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_key: hex::encode(hasher.0.finalize()),
        }
    }

    /// The file an artifact of `bytes` is cached in.
    pub fn path_for(&self, bytes: &[u8]) -> PathBuf {
        let key = sha256_hex(format!("{}{}", self.engine_key, sha256_hex(bytes)).as_bytes());
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Load the compiled artifact of `bytes`, compiling and storing it on a miss. A cache
    /// that cannot be read or written is logged and bypassed, never fatal.
    pub fn load_or_compile(&self, engine: &Engine, bytes: &[u8]) -> Result<Component, Error> {
        let path = self.path_for(bytes);
        if path.exists() {
            // SAFETY: the cache directory holds only artifacts this module serialised with
            // a matching engine (the key includes the compatibility hash); wasmtime still
            // checks the header and refuses a mismatched file.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached artifact")
                }
            }
        }
        let component = Component::new(engine, bytes)
            .map_err(|e| Error::Malformed(one_line(&format!("{e:#}"))))?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled artifact");
        }
        Ok(component)
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}
