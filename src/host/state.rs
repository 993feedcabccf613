//! The VM's state, shared by the root context and every HTTP context of one worker: the
//! compiled configuration, keys, token cache, verification budget, and the requests it holds
//! (waiting for keys, reading a body, awaiting a response). No host calls here.

use super::jwks_sync;
use super::telemetry::SharedRecord;
use crate::authn::budget::VerificationBudget;
use crate::authn::cache::TokenCache;
use crate::authn::jwks::KeySet;
use crate::authn::keys::{KeySource, ProviderKeys};
use crate::config::Config;
use crate::decision::{Forward, PendingBody, Verdict};
use crate::pipeline;
use crate::ratelimit::concurrency::Permit;
use crate::request::RequestView;
use crate::response::ResponsePlan;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The VM's state, shared by its root context and every HTTP context. `None` until configured
/// (or when the configuration was refused).
pub type Shared = Rc<RefCell<Option<Vm>>>;

/// Everything one VM holds for one configuration.
pub struct Vm {
    pub config: Rc<Config>,
    pub keys: Vec<ProviderKeys>,
    pub cache: TokenCache,
    /// Shared-data version of the JWKS installed per provider.
    pub key_versions: Vec<Option<u32>>,
    /// Bumped whenever any provider's keys change; waiters re-judge when it moves.
    pub key_generation: u64,
    /// Requests held by this VM, by HTTP context id.
    pub streams: HashMap<u32, Stream>,
    /// This worker's budget of cold signature verifications.
    pub budget: VerificationBudget,
    /// In-flight units taken per HTTP context, given back when its stream ends.
    pub permits: HashMap<u32, Vec<Permit>>,
    /// Response plans of forwarded requests, by HTTP context, until their response arrives.
    pub responses: HashMap<u32, ResponsePlan>,
    /// In-flight JWKS fetches: call token -> provider index.
    pub fetches: HashMap<u32, usize>,
    pub nonce: u64,
}

/// Why a request is held.
pub enum Stream {
    /// In `on_http_request_headers`, until its provider's keys are loaded (or the wait ends).
    Waiting(Waiter),
    /// Headers judged; the body is streaming in and is judged at its end.
    ReadingBody(PendingBody),
}

pub struct Waiter {
    /// The request's audit record, updated by whoever judges it.
    pub record: SharedRecord,
    pub request: RequestView,
    pub deadline_ms: i64,
    pub key_generation: u64,
    /// The matched route (its body limit, whether the body phase will run).
    pub route: usize,
    /// The body as far as it arrived while waiting: kept (bounded by the route's limit) once
    /// complete, because its callbacks are over by the time the wait ends.
    pub body: BodyProgress,
}

pub enum BodyProgress {
    Open,
    Complete(Vec<u8>),
    TooLarge,
    /// The request ended with trailers: judged as such (see `pipeline::on_request_trailers`).
    EndedWithTrailers,
}

impl Vm {
    pub fn new(config: Config, now_ms: i64) -> Vm {
        let keys = config
            .key_sources
            .iter()
            .map(|source| match source {
                KeySource::Inline(set) => ProviderKeys {
                    keys: Some(Rc::clone(set)),
                    ..ProviderKeys::default()
                },
                KeySource::Remote(_) => ProviderKeys::default(),
            })
            .collect();
        Vm {
            budget: VerificationBudget::new(&config.verification_budget),
            cache: TokenCache::new(config.token_cache_entries, jwks_sync::random_keys(now_ms)),
            key_versions: vec![None; config.providers.len()],
            config: Rc::new(config),
            keys,
            key_generation: 0,
            streams: HashMap::new(),
            permits: HashMap::new(),
            responses: HashMap::new(),
            fetches: HashMap::new(),
            nonce: jwks_sync::vm_nonce(now_ms),
        }
    }

    pub fn install(
        &mut self,
        provider: usize,
        keys: KeySet,
        fetched_at: i64,
        version: Option<u32>,
    ) {
        if let Some(state) = self.keys.get_mut(provider) {
            state.keys = Some(Rc::new(keys));
            state.fetched_at = Some(fetched_at);
            state.refetch_wanted = false;
        }
        if let Some(v) = self.key_versions.get_mut(provider) {
            *v = version;
        }
        self.key_generation += 1;
        // A key that disappeared must stop being honoured now, not when cached tokens expire.
        self.cache.clear();
    }
}

/// Remembers the in-flight units a forwarded request holds, for its stream's end.
pub fn hold_permits(vm: &Shared, context_id: u32, forward: &Forward) {
    if forward.permits.is_empty() {
        return;
    }
    if let Ok(mut guard) = vm.try_borrow_mut() {
        if let Some(vm) = guard.as_mut() {
            vm.permits.insert(context_id, forward.permits.clone());
        }
    }
}

/// Judges a body the headers phase asked for, when it is already complete (used by the root
/// context for requests that waited for keys).
pub fn judge_complete_body(
    vm_config: &Config,
    pending: &PendingBody,
    body: &BodyProgress,
    now_s: i64,
) -> Option<Verdict> {
    match body {
        BodyProgress::Open => None,
        BodyProgress::Complete(bytes) => {
            Some(pipeline::on_request_body(vm_config, pending, bytes, now_s))
        }
        BodyProgress::TooLarge => Some(pipeline::on_body_overflow(vm_config, pending)),
        BodyProgress::EndedWithTrailers => Some(pipeline::on_request_trailers(vm_config, pending)),
    }
}
