//! Cost of finguard's pure core on the benchmark's requests, natively and under V8 (the runtime
//! Envoy runs finguard in). Steps:
//! - `headers`: the headers phase of F1's GET (route, cached RS256 token, scope check);
//! - `cold-RS256`, `cold-PS256`, `cold-ES256`, `cold-EdDSA`: the same with the token cache
//!   emptied first, so that every request verifies its token (F2; use config `f2`, whose
//!   verification budget is out of the way);
//! - `judge`: the body phase of the 1 KB payment (bench V1, or V2 with config `v2`);
//! - `strict`, `value`, `ignore`: the strict parse, stock serde_json into a `Value`, a bare scan;
//! - `sig-RS256`, `sig-PS256`, `sig-ES256`, `sig-EdDSA`: the signature check alone (the
//!   cryptography of a cold step: the rest is parsing, claims and the cache);
//! - `redact`: the response rewrite of bench R1 (config `r1`, the 1 KB account);
//! - `walk`, `rules`, `detect`: the same rewrite with neither field rules nor detectors (the walk
//!   alone: validation and tokenising), with the field rules only, with the detectors only;
//! - `tokenise`: one `tokenise` token (HMAC-SHA256 of a customer id);
//! - `tape`: the strict parse onto the body tape the body phase validates (`finguard::tape`);
//! - `none`: nothing (set-up only).
//!
//! Natively, count instructions (wall time is noisy on a shared machine, instruction counts are
//! not):
//!   cargo build --release --example phase_cost
//!   valgrind --tool=cachegrind --cache-sim=no target/release/examples/phase_cost v1 judge 2000
//! and subtract the `none` step to get instructions per request (`callgrind` splits them by
//! function).
//!
//! Under V8 (Node's WASI; the allocator is wasi-libc's, as in Envoy):
//!   cargo build --release --example phase_cost --target wasm32-wasip1
//!   node examples/wasi_run.mjs target/wasm32-wasip1/release/examples/phase_cost.wasm v1 judge 20000
//!
//! Both print the time and the allocations per request. V8 figures are warm-cache: inside Envoy
//! the same code runs with caches other work has used, and takes about twice as long. A fifth
//! argument `cold` evicts the caches (a 2 MiB sweep) before every request and times the requests
//! alone; it closes part of that gap (the rest is the branch predictors and TLBs Envoy's own work
//! retrains, which a sweep does not reproduce).
use finguard::authn::budget::VerificationBudget;
use finguard::authn::cache::TokenCache;
use finguard::authn::keys::{KeySource, ProviderKeys};
use finguard::config::Config;
use finguard::decision::Verdict;
use finguard::header_map::HeaderMap;
use finguard::pipeline::{self, VmState};
use finguard::ratelimit::store::MemoryStore;
use finguard::request::RequestView;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const JWKS: &str = include_str!("../testkit/fixtures/jwks.json");
const PAYMENT: &[u8] = include_bytes!("../bench/payloads/payment.json");
const ACCOUNT: &[u8] = include_bytes!("../bench/payloads/account.json");
/// Tokens as the bench mints them (bench/run.py `mint`), valid from 4102441170 to 4102444800
/// (see `NOW_MS`).
const TOKENS: [(&str, &str); 4] = [
    ("RS256", include_str!("../bench/payloads/token-rs256.jwt")),
    ("PS256", include_str!("../bench/payloads/token-ps256.jwt")),
    ("ES256", include_str!("../bench/payloads/token-es256.jwt")),
    ("EdDSA", include_str!("../bench/payloads/token-eddsa.jwt")),
];
const NOW_MS: i64 = 4_102_441_200_000;
const CONFIGS: [(&str, &str); 5] = [
    ("f1", include_str!("../bench/configs/finguard/f1.json")),
    // f1 without the verification budget: for the cold steps.
    ("f2", include_str!("../bench/configs/finguard/f2.json")),
    ("v1", include_str!("../bench/configs/finguard/v1.json")),
    ("v2", include_str!("../bench/configs/finguard/v2.json")),
    ("r1", include_str!("../bench/configs/finguard/r1.json")),
];
const STEPS: [&str; 20] = [
    "none",
    "judge",
    "strict",
    "value",
    "ignore",
    "headers",
    "cold-RS256",
    "cold-PS256",
    "cold-ES256",
    "cold-EdDSA",
    "tape",
    "sig-RS256",
    "sig-PS256",
    "sig-ES256",
    "sig-EdDSA",
    "redact",
    "walk",
    "rules",
    "detect",
    "tokenise",
];

/// Counts allocations, to tell how much of a request's cost is the allocator's.
struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One VM's state, as the host adapter keeps it (inline keys, a warm token cache).
struct Vm {
    config: Config,
    keys: Vec<ProviderKeys>,
    cache: TokenCache,
    store: MemoryStore,
    budget: VerificationBudget,
}

impl Vm {
    fn new(text: &str) -> Vm {
        let keys: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let text = text.replace("\"$JWKS_KEYS\"", &keys["keys"].to_string());
        let config = Config::compile(text.as_bytes()).unwrap();
        let keys = config
            .key_sources
            .iter()
            .map(|source| match source {
                KeySource::Inline(set) => ProviderKeys {
                    keys: Some(set.clone()),
                    ..ProviderKeys::default()
                },
                KeySource::Remote(_) => ProviderKeys::default(),
            })
            .collect();
        let budget = VerificationBudget::new(Some(config.verification_rate));
        Vm {
            config,
            keys,
            cache: TokenCache::new(64, [1, 2, 3, 4]),
            store: MemoryStore::default(),
            budget,
        }
    }

    /// The token's signature alone, checked with the first key of the provider's set that accepts
    /// its algorithm: the cryptographic part of a cold verification.
    fn verify_signature(&self, alg: &str) -> bool {
        use base64::Engine as _;
        let token = TOKENS
            .iter()
            .find(|(name, _)| *name == alg)
            .map_or("", |(_, token)| token.trim());
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        let alg = finguard::authn::jwks::parse_algorithm(alg).unwrap();
        let keys = self.keys[0].keys.as_ref().unwrap();
        keys.candidates(None, alg).any(|key| {
            key.key
                .verify(alg, black_box(message.as_bytes()), &signature)
        })
    }

    /// F1's GET as Envoy hands it to the filter (wrk's request plus Envoy's own headers).
    fn get_account(&mut self, alg: &str) -> Verdict {
        let token = TOKENS
            .iter()
            .find(|(name, _)| *name == alg)
            .map_or("", |(_, token)| token.trim());
        let headers = [
            (":authority", "127.0.0.1:10000"),
            (":path", "/v1/accounts/acc-1"),
            (":method", "GET"),
            (":scheme", "http"),
            ("authorization", &format!("Bearer {token}")),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "6f1c1d52-3b0e-4c8e-9d0a-3f2b1c0d4e5f"),
        ];
        // Read from the host's serialisation, as src/host/http.rs does.
        let request =
            RequestView::from_map(HeaderMap::from_serialized(serialize(&headers)).unwrap());
        let state = VmState {
            keys: &mut self.keys,
            cache: &mut self.cache,
            store: &mut self.store,
            budget: &mut self.budget,
        };
        pipeline::on_request_headers(&self.config, &request, state, NOW_MS, true)
    }
}

/// A header map as Envoy serialises it for `proxy_get_header_map_pairs`.
fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        for part in [name, value] {
            out.extend(part.as_bytes());
            out.push(0);
        }
    }
    out
}

thread_local! {
    /// Compiled once (and the token cached), so that a run of one request times the request only.
    static VMS: Vec<RefCell<Vm>> = CONFIGS.iter().map(|(_, text)| {
        let mut vm = Vm::new(text);
        let _ = vm.get_account("RS256");
        RefCell::new(vm)
    }).collect();
}

/// Runs `step` `n` times; returns the allocations per request.
fn run(config_name: &str, step: &str, n: usize, cold: bool) -> usize {
    let index = CONFIGS
        .iter()
        .position(|(name, _)| *name == config_name)
        .unwrap_or_else(|| panic!("unknown config {config_name}"));
    VMS.with(|vms| run_with(&mut vms[index].borrow_mut(), step, n, cold))
}

fn run_with(vm: &mut Vm, step: &str, n: usize, cold: bool) -> usize {
    // For `walk`, `rules` and `detect`: R1's response policy with parts of it taken out.
    let variant = vm
        .config
        .routes
        .routes()
        .first()
        .and_then(|r| r.response.as_ref())
        .map(|full| finguard::redaction::ResponsePolicy {
            rules: if step == "rules" {
                full.rules.clone()
            } else {
                Vec::new()
            },
            detect_pan: full.detect_pan.clone().filter(|_| step == "detect"),
            detect_iban: full.detect_iban.clone().filter(|_| step == "detect"),
            detect_email: full.detect_email.clone().filter(|_| step == "detect"),
            scopes: full.scopes.clone(),
            headers: full.headers.clone(),
            sanitise_upstream_errors: false,
            refuse_non_json: false,
            max_body_bytes: full.max_body_bytes,
        });
    let token_key = finguard::redaction::mask::TokenKey::new(&[7u8; 32]).unwrap();
    let mut out = String::with_capacity(64);
    let allocations_before = ALLOCATIONS.load(Relaxed);
    let mut sweep = if cold {
        vec![0u8; COLD_SWEEP_BYTES]
    } else {
        Vec::new()
    };
    let mut timed = std::time::Duration::ZERO;
    for i in 0..n {
        let started = if cold {
            evict_caches(&mut sweep, i);
            Some(std::time::Instant::now())
        } else {
            None
        };
        match step {
            "headers" => assert!(matches!(
                black_box(vm.get_account("RS256")),
                Verdict::Allow(_)
            )),
            cold if cold.starts_with("cold-") => {
                vm.cache.clear();
                let verdict = black_box(vm.get_account(&cold[5..]));
                assert!(matches!(verdict, Verdict::Allow(_)), "{verdict:?}");
            }
            sig if sig.starts_with("sig-") => assert!(vm.verify_signature(&sig[4..])),
            "judge" => assert!(vm.config.routes.routes()[0]
                .request
                .judge_body(Some("application/json"), black_box(PAYMENT))
                .is_ok()),
            "redact" => {
                let policy = vm.config.routes.routes()[0].response.as_ref().unwrap();
                let out = finguard::redaction::rewrite::rewrite(black_box(ACCOUNT), policy, 0);
                assert!(matches!(black_box(out), Ok(Some(_))));
            }
            "walk" | "rules" | "detect" => {
                let policy = variant.as_ref().unwrap();
                let out = finguard::redaction::rewrite::rewrite(black_box(ACCOUNT), policy, 0);
                black_box(out.ok());
            }
            "tokenise" => {
                out.clear();
                token_key.token("cus_", black_box("cust-1"), &mut out);
                black_box(&out);
            }
            "strict" => drop(black_box(
                finguard::json::parse_strict(black_box(PAYMENT)).unwrap(),
            )),
            "value" => drop(black_box(
                serde_json::from_slice::<serde_json::Value>(black_box(PAYMENT)).unwrap(),
            )),
            "tape" => drop(black_box(
                finguard::tape::Tape::parse(black_box(PAYMENT)).unwrap(),
            )),
            "ignore" => drop(black_box(
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(PAYMENT)).unwrap(),
            )),
            _ => {}
        }
        if let Some(started) = started {
            timed += started.elapsed();
        }
    }
    COLD_NS.store(timed.as_nanos() as u64, Relaxed);
    (ALLOCATIONS.load(Relaxed) - allocations_before) / n.max(1)
}

/// Cold mode: bytes written before every request, twice the 1 MiB L2 of the benchmark host's
/// cores (the L2 holds L1's lines too, so code is evicted as well as data). Inside Envoy, the
/// proxy's own work between two requests does this; a warm loop hides it.
const COLD_SWEEP_BYTES: usize = 2 << 20;
static COLD_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn evict_caches(sweep: &mut [u8], round: usize) {
    for line in sweep.chunks_mut(64) {
        line[0] = line[0].wrapping_add(round as u8);
    }
    black_box(&sweep);
}

/// For `wasi_run.mjs`, which times the call: `config` an index in [`CONFIGS`], `step` one in
/// [`STEPS`]. Returns the allocations per request.
#[no_mangle]
pub extern "C" fn phase_cost_run(config: u32, step: u32, n: u32) -> u32 {
    let config_name = CONFIGS.get(config as usize).map_or("v1", |(name, _)| name);
    let step = STEPS.get(step as usize).copied().unwrap_or("none");
    run(config_name, step, n as usize, false) as u32
}

/// [`phase_cost_run`] with the caches evicted before every request (see [`COLD_SWEEP_BYTES`]);
/// returns the nanoseconds the requests took (the sweeps not counted).
#[no_mangle]
pub extern "C" fn phase_cost_run_cold(config: u32, step: u32, n: u32) -> u64 {
    let config_name = CONFIGS.get(config as usize).map_or("v1", |(name, _)| name);
    let step = STEPS.get(step as usize).copied().unwrap_or("none");
    run(config_name, step, n as usize, true);
    COLD_NS.load(Relaxed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (config_name, step) = (args[1].as_str(), args[2].as_str());
    let n: usize = args[3].parse().unwrap();
    let _ = run(config_name, "none", 1, false);
    let started = std::time::Instant::now();
    let allocations = run(config_name, step, n, false);
    let per = started.elapsed().as_nanos() / n.max(1) as u128;
    eprintln!("{config_name} {step}: {per} ns, {allocations} allocations per request");
}
