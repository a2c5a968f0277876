use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters exported on `/metrics` in Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    pub http_requests_2xx: AtomicU64,
    pub http_requests_4xx: AtomicU64,
    pub http_requests_5xx: AtomicU64,
    pub http_requests_other: AtomicU64,
    pub events_total: AtomicU64,
    pub stream_clients: AtomicU64,
    pub routed_assigned: AtomicU64,
    pub routed_unclaimed: AtomicU64,
    pub claims_won: AtomicU64,
    pub claims_lost: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub webhooks_duplicate: AtomicU64,
    pub webhooks_applied: AtomicU64,
    /// Webhooks in the dead-letter list (set at start from the store, then counted).
    pub webhooks_dead: AtomicU64,
    pub outbound_sent: AtomicU64,
    pub outbound_failed: AtomicU64,
    pub outbound_unknown: AtomicU64,
    pub token_refreshes: AtomicU64,
}

impl Metrics {
    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.http_requests_2xx,
            400..=499 => &self.http_requests_4xx,
            500..=599 => &self.http_requests_5xx,
            _ => &self.http_requests_other,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {}", v.load(Relaxed));
            }
        };
        metric(
            "sop_http_requests_total",
            "counter",
            "HTTP requests answered, by status class.",
            &[
                ("{class=\"2xx\"}", &self.http_requests_2xx),
                ("{class=\"4xx\"}", &self.http_requests_4xx),
                ("{class=\"5xx\"}", &self.http_requests_5xx),
                ("{class=\"other\"}", &self.http_requests_other),
            ],
        );
        metric(
            "sop_events_total",
            "counter",
            "Events appended to the log and published.",
            &[("", &self.events_total)],
        );
        metric(
            "sop_stream_clients",
            "gauge",
            "Connected stream clients.",
            &[("", &self.stream_clients)],
        );
        metric(
            "sop_routing_decisions_total",
            "counter",
            "Routing decisions, by outcome.",
            &[
                ("{outcome=\"assigned\"}", &self.routed_assigned),
                ("{outcome=\"unclaimed\"}", &self.routed_unclaimed),
            ],
        );
        metric(
            "sop_claims_total",
            "counter",
            "Claims, by result.",
            &[
                ("{result=\"won\"}", &self.claims_won),
                ("{result=\"lost\"}", &self.claims_lost),
            ],
        );
        metric(
            "sop_webhooks_total",
            "counter",
            "Zalo webhooks, by result.",
            &[
                ("{result=\"accepted\"}", &self.webhooks_accepted),
                ("{result=\"rejected\"}", &self.webhooks_rejected),
                ("{result=\"duplicate\"}", &self.webhooks_duplicate),
            ],
        );
        metric(
            "sop_webhooks_applied_total",
            "counter",
            "Queued webhooks applied (stored, routed, pushed).",
            &[("", &self.webhooks_applied)],
        );
        metric(
            "sop_webhooks_dead",
            "gauge",
            "Acknowledged webhooks that could not be applied, set aside (GET /api/v1/webhooks/dead).",
            &[("", &self.webhooks_dead)],
        );
        metric(
            "sop_outbound_total",
            "counter",
            "Replies sent through Zalo, by result.",
            &[
                ("{result=\"sent\"}", &self.outbound_sent),
                ("{result=\"failed\"}", &self.outbound_failed),
                ("{result=\"unknown\"}", &self.outbound_unknown),
            ],
        );
        metric(
            "sop_token_refreshes_total",
            "counter",
            "OAuth token refreshes.",
            &[("", &self.token_refreshes)],
        );
        out
    }
}
