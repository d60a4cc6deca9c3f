//! The shared wasmtime runtime: engine, linker, epoch ticker and artifact cache.
//!
//! One `Runtime` serves every policy of a host. It is configured for containment: the
//! pooling allocator with a hard ceiling on memory, epoch interruption driven by a
//! background ticker, and WASI linked with no files, no network, no environment and no
//! blocking call.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy, Store,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};

use super::cache::ArtifactCache;
use super::ctx::{MemoryCap, PolicyCtx};
use super::error::{Error, one_line};
use super::stdio::{GuestOutput, Stream};
use super::voice::Voice;
use super::wit::Policy;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Most random bytes one WASI call may ask for: generating them is host work the epoch
/// deadline cannot interrupt.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Most WASI resources (pollables, streams) one policy instance may hold: they are host
/// memory outside its memory cap.
const MAX_RESOURCES: usize = 1024;

/// Settings of the shared runtime.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Highest memory cap any policy may ask for, in MiB.
    pub max_memory_mib: u64,
    /// Component instances the pool holds at once (running versions, fallbacks, candidates).
    pub pool_instances: u32,
    /// Where compiled artifacts are cached; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// A fixed clock and random seed for every policy, for simulation.
    pub deterministic: Option<Determinism>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_memory_mib: 1024,
            pool_instances: 32,
            cache_dir: None,
            deterministic: None,
        }
    }
}

/// A fixed clock and seed, so that a policy's behaviour depends only on its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Determinism {
    /// What the wall clock reads, in milliseconds since the Unix epoch.
    pub clock_ms: u64,
    /// Seed of the policy's random numbers.
    pub seed: u64,
}

struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.as_nanos() as u64
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shardcast-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The engine, linker and cache every policy of a host runs on.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PolicyCtx>,
    cache: Option<ArtifactCache>,
    options: RuntimeOptions,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Build a runtime. Fails only when wasmtime rejects the configuration.
    pub fn new(options: RuntimeOptions) -> Result<Arc<Self>, Error> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(options.pool_instances)
            .total_core_instances(options.pool_instances * 16)
            .total_memories(options.pool_instances * 2)
            .total_tables(options.pool_instances * 8)
            .total_stacks(options.pool_instances)
            .max_core_instances_per_component(32)
            .max_memories_per_component(2)
            .max_tables_per_component(16)
            .max_memory_size((options.max_memory_mib << 20) as usize);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(1 << 20);
        if std::env::var_os("SHARDCAST_PERFMAP").is_some() {
            // Lets `perf` name the functions of compiled policies (/tmp/perf-<pid>.map).
            config.profiler(ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| Error::Runtime(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| Error::Runtime(format!("{e:#}")))?;
        super::nonblocking::add_to_linker(&mut linker)
            .map_err(|e| Error::Runtime(format!("{e:#}")))?;
        Policy::add_to_linker::<PolicyCtx, wasmtime::component::HasSelf<PolicyCtx>>(
            &mut linker,
            |ctx| ctx,
        )
        .map_err(|e| Error::Runtime(format!("{e:#}")))?;
        let cache = options
            .cache_dir
            .clone()
            .map(|dir| ArtifactCache::new(dir, &engine));
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache,
            options,
            _ticker: ticker,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with WASI and the shardcast imports.
    pub fn linker(&self) -> &Linker<PolicyCtx> {
        &self.linker
    }

    /// The runtime's options.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// Compile a component, through the artifact cache when there is one.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, Error> {
        match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes),
            None => Component::new(&self.engine, bytes)
                .map_err(|e| Error::Malformed(one_line(&format!("{e:#}")))),
        }
    }

    /// A fresh store for one policy instance, with its memory cap, speaking through
    /// `voice`.
    pub fn store(&self, voice: Arc<Voice>, memory_mib: u64) -> Store<PolicyCtx> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput::new(voice.clone(), Stream::Stdout))
            .stderr(GuestOutput::new(voice.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES);
        if let Some(d) = self.options.deterministic {
            let at = Duration::from_millis(d.clock_ms);
            wasi.wall_clock(FixedClock(at))
                .monotonic_clock(FixedClock(at))
                .secure_random(StdRng::seed_from_u64(d.seed))
                .insecure_random(StdRng::seed_from_u64(d.seed ^ 0x5eed))
                .insecure_random_seed(u128::from(d.seed));
        }
        let ctx = PolicyCtx {
            voice,
            wasi: wasi.build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            memory: MemoryCap {
                bytes: (memory_mib.min(self.options.max_memory_mib) << 20) as usize,
                hit: false,
            },
            view: None,
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|ctx| &mut ctx.memory);
        store.epoch_deadline_trap();
        store
    }
}
