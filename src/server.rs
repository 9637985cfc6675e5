//! The operator's HTTP endpoints: /healthz (liveness), /readyz (ready once the watch
//! caches have synced, or while standing by for the leader lease) and /metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::telemetry::Metrics;

/// How long to wait after a failed accept: 10 ms doubling to 1 s.
const ACCEPT_BACKOFF: Backoff = Backoff {
    first: std::time::Duration::from_millis(10),
    most: std::time::Duration::from_secs(1),
};

/// Whether the operator is ready to serve.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the operator ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// True once ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Binds `addr` and serves the endpoints until the process ends. Returns the bound address
/// (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(address = %bound, "serving /healthz, /readyz and /metrics");
    let task = tokio::spawn(async move {
        let mut failures = 0;
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    failures = 0;
                    stream
                }
                // NB: e.g. out of file descriptors: retrying at once would spin a core.
                Err(err) => {
                    failures += 1;
                    let wait = ACCEPT_BACKOFF.delay(failures);
                    warn!(error = %err, retry_in = ?wait, "could not accept a connection");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let (health, metrics) = (health.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| respond(req, health.clone(), metrics.clone()));
                if let Err(err) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %err, "HTTP connection ended");
                }
            });
        }
    });
    Ok((bound, task))
}

async fn respond(
    req: Request<Incoming>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body, content_type) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if health.is_ready() => (StatusCode::OK, "ready\n".to_string(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet\n".to_string(),
            "text/plain",
        ),
        "/metrics" => (
            StatusCode::OK,
            metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string(), "text/plain"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}
