//! What `/metrics` exports (Prometheus/OpenMetrics text, through `prometheus-client`): counters of
//! what the hub did, and latency histograms of HTTP by route, webhook → event, and Zalo API calls.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// `[(label, value)]`, e.g. `[("outcome", "assigned")]`.
type Labels = Vec<(&'static str, &'static str)>;

/// One HTTP request: the route as registered (`/api/v1/conversations/{id}`, never the raw path,
/// so ids do not explode the series), the method and the status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub class: &'static str,
}

/// One Zalo API call: which, and whether Zalo answered success.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZaloCallLabels {
    pub call: &'static str,
    pub outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_latency: Histograms<HttpLabels>,
    pub events_total: Counter,
    pub stream_clients: Gauge,
    pub routed_assigned: Counter,
    pub routed_unclaimed: Counter,
    pub claims_won: Counter,
    pub claims_lost: Counter,
    pub webhooks_accepted: Counter,
    pub webhooks_rejected: Counter,
    pub webhooks_duplicate: Counter,
    pub webhooks_stale: Counter,
    pub webhooks_applied: Counter,
    /// Webhooks in the dead-letter list (set at start from the store, then counted).
    pub webhooks_dead: Gauge,
    /// From a webhook's acknowledgement to its events being published.
    pub webhook_to_event: Histogram,
    pub outbound_sent: Counter,
    pub outbound_failed: Counter,
    pub outbound_unknown: Counter,
    pub token_refreshes: Counter,
    zalo_calls: Histograms<ZaloCallLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sop");
        // A counter family with one label, and a handle on each of its series.
        let labelled = |registry: &mut Registry,
                        name: &str,
                        help: &str,
                        key: &'static str,
                        values: &[&'static str]| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            values
                .iter()
                .map(|v| family.get_or_create_owned(&vec![(key, *v)]))
                .collect::<Vec<_>>()
        };
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by status class",
            http_requests.clone(),
        );
        let http_latency: Histograms<HttpLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status class",
            http_latency.clone(),
        );
        let events_total = Counter::default();
        registry.register(
            "events",
            "Events appended to the log and published",
            events_total.clone(),
        );
        let stream_clients = Gauge::default();
        registry.register(
            "stream_clients",
            "Connected stream clients",
            stream_clients.clone(),
        );
        let [routed_assigned, routed_unclaimed] = labelled(
            &mut registry,
            "routing_decisions",
            "Routing decisions, by outcome",
            "outcome",
            &["assigned", "unclaimed"],
        )
        .try_into()
        .unwrap();
        let [claims_won, claims_lost] = labelled(
            &mut registry,
            "claims",
            "Claims, by result",
            "result",
            &["won", "lost"],
        )
        .try_into()
        .unwrap();
        let [webhooks_accepted, webhooks_rejected, webhooks_duplicate, webhooks_stale] = labelled(
            &mut registry,
            "webhooks",
            "Zalo webhooks, by result (stale: signed but too old or too far ahead, not applied)",
            "result",
            &["accepted", "rejected", "duplicate", "stale"],
        )
        .try_into()
        .unwrap();
        let webhooks_applied = Counter::default();
        registry.register(
            "webhooks_applied",
            "Queued webhooks applied (stored, routed, pushed)",
            webhooks_applied.clone(),
        );
        let webhooks_dead = Gauge::default();
        registry.register(
            "webhooks_dead",
            "Acknowledged webhooks that could not be applied, set aside (GET /api/v1/webhooks/dead)",
            webhooks_dead.clone(),
        );
        let webhook_to_event = latency_histogram();
        registry.register(
            "webhook_to_event_seconds",
            "From a webhook's acknowledgement to its events being published",
            webhook_to_event.clone(),
        );
        let [outbound_sent, outbound_failed, outbound_unknown] = labelled(
            &mut registry,
            "outbound",
            "Replies sent through Zalo, by result (unknown: ambiguous, awaiting Zalo's echo)",
            "result",
            &["sent", "failed", "unknown"],
        )
        .try_into()
        .unwrap();
        let token_refreshes = Counter::default();
        registry.register(
            "token_refreshes",
            "OAuth token refreshes",
            token_refreshes.clone(),
        );
        let zalo_calls: Histograms<ZaloCallLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "zalo_api_call_seconds",
            "Zalo API call latency, by call and outcome",
            zalo_calls.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_latency,
            events_total,
            stream_clients,
            routed_assigned,
            routed_unclaimed,
            claims_won,
            claims_lost,
            webhooks_accepted,
            webhooks_rejected,
            webhooks_duplicate,
            webhooks_stale,
            webhooks_applied,
            webhooks_dead,
            webhook_to_event,
            outbound_sent,
            outbound_failed,
            outbound_unknown,
            token_refreshes,
            zalo_calls,
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, route: &str, method: &str, status: u16, took: Duration) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.http_requests
            .get_or_create(&vec![("class", class)])
            .inc();
        self.http_latency
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                class,
            })
            .observe(took.as_secs_f64());
    }

    pub fn observe_zalo_call(&self, call: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.zalo_calls
            .get_or_create(&ZaloCallLabels { call, outcome })
            .observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
