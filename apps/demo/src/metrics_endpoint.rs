//! `GET /metrics` in Prometheus's text format, on a listener of its own (`METRICS_BIND`), so
//! that the metrics are not served to the site's visitors.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use cloakroom::metrics::STORE_CALL_SECONDS;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// Store call latencies, seconds: from a fast local Redis to the operation timeout.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

// How often histograms are compacted and idle series dropped.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for the whole process and serves it on `bind`; returns the
/// address bound. Call it before the first request.
///
/// # Errors
///
/// Another recorder is installed, or `bind` cannot be listened on.
pub async fn serve(bind: SocketAddr) -> anyhow::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(STORE_CALL_SECONDS.to_owned()),
            &LATENCY_BUCKETS,
        )
        .context("the latency buckets are not usable")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on METRICS_BIND {bind}"))?;
    let bound = listener.local_addr().unwrap_or(bind);
    if !bound.ip().is_loopback() {
        tracing::warn!(
            address = %bound,
            "the metrics listener has no authentication and is reachable from other hosts: \
             keep it on a private network"
        );
    }
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(handle)).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(bound)
}

fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }
        }),
    )
}
