//! The hub (`sop serve`): REST API, live stream, Zalo webhook and OAuth callback, on one axum
//! router over the hub core.

pub mod api;
pub mod error;
pub mod extract;
pub mod hub;
pub mod listener;
pub mod stream;
pub mod zalo;

use crate::config::Config;
use crate::store::sql::Db;
use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hub::Hub;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

pub struct AppCtx {
    pub hub: Arc<Hub>,
    /// The Zalo side; `None` when no Zalo app is configured.
    pub zalo: Option<Arc<zalo::ZaloHub>>,
    pub config: Config,
    /// Flips to true on shutdown so long-lived streams end.
    pub shutdown: watch::Receiver<bool>,
}

pub type AppState = Arc<AppCtx>;

pub fn router(app: AppState) -> Router {
    let max_body = app.config.server.max_body_bytes;
    let api = api::routes()
        .route("/stream", get(stream::stream))
        .route("/connections/zalo/authorize", post(zalo::oauth::authorize))
        .layer(DefaultBodyLimit::max(max_body));
    Router::new()
        .nest("/api/v1", api)
        .route("/zalo/webhook", post(zalo::webhook::receive))
        .route("/zalo/oauth/callback", get(zalo::oauth::callback))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { error::ApiError::not_found("no such endpoint").into_response() })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

/// 200 when the hub can serve, else 503; the body says which check failed and why.
async fn healthz(State(app): State<AppState>) -> Response {
    let report = app.hub.check_health().await;
    let status = if report.healthy {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if report.healthy { "ok" } else { "unhealthy" },
        "checks": report.checks,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(want) = &app.config.server.metrics_token {
        use subtle::ConstantTimeEq;
        let given = extract::bearer_token(&headers).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(want.as_bytes())) {
            return error::ApiError::unauthorized("GET /metrics wants the metrics token")
                .into_response();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.hub.metrics.render(),
    )
        .into_response()
}

/// Counts and times every request by its route pattern (`MatchedPath`, never the raw path).
async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    app.hub
        .metrics
        .observe_http(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// How long a stopping hub waits for requests in flight (SIGTERM must end it within 10 s).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running hub: its address and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, ends streams, waits for in-flight requests and flushes the store.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let hub = self.hub.clone();
        hub.shutdown().await;
    }
}

/// Starts the hub on an already bound listener (tests bind port 0).
pub async fn start(
    config: Config,
    hub: Arc<Hub>,
    listener: tokio::net::TcpListener,
) -> Result<Running> {
    let addr = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    hub.set_max_pending_attachment_bytes(config.server.max_pending_attachment_bytes);
    let zalo = zalo::ZaloHub::new(&config.zalo, hub.clone());
    if let Some(z) = &zalo {
        z.start_workers();
    } else {
        tracing::warn!("no [zalo] app_id configured: connecting OAs and webhooks are disabled");
    }
    let app = Arc::new(AppCtx {
        hub: hub.clone(),
        zalo,
        config,
        shutdown: shutdown.clone(),
    });
    let limits = listener::Limits::from_config(&app.config.server);
    let router = router(app);
    let task = tokio::spawn(listener::serve(
        listener,
        router,
        limits,
        shutdown,
        SHUTDOWN_GRACE,
    ));
    Ok(Running {
        addr,
        hub,
        stop,
        task,
    })
}

pub fn default_data_dir() -> PathBuf {
    crate::config::project_dirs()
        .map(|d| d.data_dir().join("hub"))
        .unwrap_or_else(|| PathBuf::from("sop-data"))
}

/// The URL of the hub's database: `[server] database`, else SQLite in the data dir.
pub fn database_url(config: &Config, data_dir: &Path) -> Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    Ok(match &config.server.database {
        Some(url) if !url.is_empty() => url.clone(),
        _ => format!("sqlite://{}", data_dir.join("sop.db").display()),
    })
}

/// The hub's database as configured (`[server] database`, else SQLite in the data dir), migrated
/// and checked. A round-1 data dir (sled) is refused until it is imported.
pub async fn open_database(config: &Config, data_dir: &Path) -> Result<Arc<Db>> {
    let db = Db::open(&database_url(config, data_dir)?).await?;
    let sled = data_dir.join("sled");
    if sled.exists() && !db.has_data().await? {
        anyhow::bail!(
            "{} holds a round-1 store (sled) that this hub no longer reads; import it once with \
             `sop admin import --from-sled {}` (then the hub starts on {})",
            data_dir.display(),
            data_dir.display(),
            db.engine_name()
        );
    }
    Ok(Arc::new(db))
}

/// Holds `DATA_DIR/hub.lock` while the returned file is open: one hub per data dir (its
/// attachments are its own). `sop admin` does not take it, so it works while the hub runs.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let path = data_dir.join("hub.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "data dir {} is in use by another sop process ({} is locked); stop that process or \
             choose another --data-dir",
            data_dir.display(),
            path.display()
        );
    }
    Ok(file)
}

/// `sop serve`: runs until SIGINT/SIGTERM, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<()> {
    let data_dir = config
        .server
        .data_dir
        .clone()
        .unwrap_or_else(default_data_dir);
    let _lock = lock_data_dir(&data_dir)?;
    let db = open_database(&config, &data_dir).await?;
    let hub = Hub::open(db, &data_dir, config.server.event_retention).await?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let running = start(config, hub, listener).await?;
    tracing::info!(addr = %running.addr, data_dir = %data_dir.display(), "hub listening");
    println!("sop hub listening on http://{}", running.addr);
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// SIGINT, SIGTERM, or SIGHUP (the terminal or SSH session went away).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
