//! `wisp_requests_total{mode,decision,reason,issuer}` and its pre-resolved
//! handles.

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec};

/// The front end a request came through: the `mode` label of
/// `wisp_requests_total` and the decision log's `mode` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The proxy listener: decided and forwarded.
    Proxy,
    /// The decision service: decided for another proxy (ext_authz, forward-auth).
    Decision,
}

impl Mode {
    /// The label value: `proxy` or `decision`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::Decision => "decision",
        }
    }

    /// The modes `config` serves.
    fn served_by(config: &crate::config::Config) -> Vec<Mode> {
        let mut modes = Vec::with_capacity(2);
        if config.serves_proxy() {
            modes.push(Mode::Proxy);
        }
        if config.decision_service.is_some() {
            modes.push(Mode::Decision);
        }
        modes
    }
}

/// `wisp_requests_total` with a handle resolved in advance for every mode
/// served, every (decision, reason) wisp produces and every configured
/// issuer (plus `none`), so counting a request is two lookups in immutable maps rather
/// than a label hash under the registry's lock. The issuer label is bounded:
/// configured names and `none`, never a value a client chose.
#[derive(Debug, Clone)]
pub struct RequestCounters {
    vec: IntCounterVec,
    known: Arc<arc_swap::ArcSwap<KnownCounters>>,
}

/// (mode, decision, reason) → issuer name → counter.
type KnownCounters =
    crate::FastMap<(Mode, &'static str, &'static str), crate::FastMap<Arc<str>, IntCounter>>;

/// The `issuer` label of requests with no (matching) issuer.
pub const NO_ISSUER: &str = "none";

impl RequestCounters {
    pub(super) fn new(vec: IntCounterVec) -> RequestCounters {
        // Resolved by `set_issuers`, once the config says which modes run
        // (a series at 0 for a mode not served would only mislead).
        RequestCounters {
            vec,
            known: Arc::new(arc_swap::ArcSwap::from_pointee(KnownCounters::default())),
        }
    }

    /// Every (decision, reason) pair wisp produces.
    fn pairs() -> Vec<(&'static str, &'static str)> {
        crate::pipeline::Outcome::labels()
    }

    fn resolve(&self, issuers: &[Arc<str>], modes: &[Mode]) {
        let mut names: Vec<Arc<str>> = issuers.to_vec();
        names.push(Arc::from(NO_ISSUER));
        let mut known = KnownCounters::default();
        for &mode in modes {
            for (decision, reason) in Self::pairs() {
                let by_issuer = names
                    .iter()
                    .map(|issuer| {
                        let labels = [mode.label(), decision, reason, issuer];
                        (Arc::clone(issuer), self.vec.with_label_values(&labels))
                    })
                    .collect();
                known.insert((mode, decision, reason), by_issuer);
            }
        }
        self.known.store(Arc::new(known));
    }

    /// Resolves the handles of the issuers `config` names, for the modes it
    /// serves (at start and on every reload).
    pub fn set_issuers(&self, config: &crate::config::Config) {
        let names: Vec<Arc<str>> = config.issuers.iter().map(|i| Arc::clone(&i.name)).collect();
        self.resolve(&names, &Mode::served_by(config));
    }

    /// Counts one request; `issuer` is a configured issuer's name or `None`.
    pub fn inc(
        &self,
        mode: Mode,
        decision: &'static str,
        reason: &'static str,
        issuer: Option<&str>,
    ) {
        let issuer = issuer.unwrap_or(NO_ISSUER);
        match self
            .known
            .load()
            .get(&(mode, decision, reason))
            .and_then(|by_issuer| by_issuer.get(issuer))
        {
            Some(counter) => counter.inc(),
            // A pair not listed above: still counted, just resolved now.
            None => self
                .vec
                .with_label_values(&[mode.label(), decision, reason, issuer])
                .inc(),
        }
    }

    /// The counter of one (decision, reason), summed over issuers.
    pub fn get(&self, decision: &str, reason: &str) -> u64 {
        let mut total = 0;
        for family in prometheus::core::Collector::collect(&self.vec) {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_owned())
                };
                if label("decision").as_deref() == Some(decision)
                    && label("reason").as_deref() == Some(reason)
                {
                    total += metric.get_counter().get_value() as u64;
                }
            }
        }
        total
    }

    pub(super) fn forget_issuer(&self, issuer: &str) {
        for mode in [Mode::Proxy, Mode::Decision] {
            for (decision, reason) in Self::pairs() {
                let labels = [mode.label(), decision, reason, issuer];
                let _ = self.vec.remove_label_values(&labels);
            }
        }
    }
}
