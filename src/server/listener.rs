//! The hub's accept loop: HTTP/1.1 with the limits a public port needs (issue 9).
//!
//! `axum::serve` applies no timeout, so a client sending its request at one byte a second holds a
//! socket forever, and enough of them exhaust the process's file descriptors. Here:
//! - request headers (and the idle time between keep-alive requests) must arrive within
//!   `header_timeout`, hyper's own timer;
//! - a request body must arrive whole within `body_timeout` (408 `body_timeout`);
//! - open sockets, websockets included, are capped below the descriptor limit; at the cap a new
//!   connection evicts the oldest one with no request in flight (a slow client sending headers is
//!   such a connection), so `/healthz` and webhooks still get in under a slowloris flood.

use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// Descriptors kept free for what the hub opens itself: store files, Zalo connections, logs.
const RESERVED_DESCRIPTORS: u64 = 128;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(server: &crate::config::ServerConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(server.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(server.body_timeout_secs.max(1)),
            max_connections: effective_connection_cap(server.max_connections),
        }
    }
}

/// The configured cap, lowered to fit under the process's descriptor limit.
fn effective_connection_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let fits = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize
    } else {
        configured
    };
    let cap = configured.min(fits);
    if cap < configured {
        tracing::warn!(
            configured,
            cap,
            "max_connections lowered to fit the descriptor limit (raise LimitNOFILE)"
        );
    }
    cap
}

/// Open connections, oldest first, and which of them have a request in flight.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: usize,
    conns: BTreeMap<u64, Entry>,
}

struct Entry {
    in_flight: usize,
    evict: Option<oneshot::Sender<()>>,
}

#[derive(Default, Clone)]
struct Connections(Arc<Mutex<Table>>);

impl Connections {
    /// Registers a new socket; the guard counts it open until the socket is dropped (after a
    /// websocket upgrade that is when the websocket ends).
    fn register(&self) -> (u64, OpenGuard, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut t = self.0.lock();
        let id = t.next_id;
        t.next_id += 1;
        t.open += 1;
        t.conns.insert(
            id,
            Entry {
                in_flight: 0,
                evict: Some(tx),
            },
        );
        (id, OpenGuard(self.clone()), rx)
    }

    fn open(&self) -> usize {
        self.0.lock().open
    }

    /// Closes the oldest connection with no request in flight; false when every one is busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut t = self.0.lock();
        let victim = t
            .conns
            .iter_mut()
            .find(|(_, e)| e.in_flight == 0 && e.evict.is_some());
        match victim {
            Some((_, e)) => {
                let _ = e.evict.take().map(|tx| tx.send(()));
                true
            }
            None => false,
        }
    }

    fn request_started(&self, id: u64) {
        if let Some(e) = self.0.lock().conns.get_mut(&id) {
            e.in_flight += 1;
        }
    }

    fn request_finished(&self, id: u64) {
        if let Some(e) = self.0.lock().conns.get_mut(&id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }

    /// The HTTP connection ended (closed, evicted, or handed over as a websocket).
    fn served(&self, id: u64) {
        self.0.lock().conns.remove(&id);
    }
}

struct OpenGuard(Connections);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut t = self.0 .0.lock();
        t.open = t.open.saturating_sub(1);
    }
}

/// A TCP stream that counts as open until it is dropped, wherever it ends up.
struct CountedStream {
    inner: TcpStream,
    _open: OpenGuard,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that fails once `body_timeout` has passed since the request began.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("request body not received in time".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets open connections finish
/// for up to `grace` (websockets end on the same signal).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let connections = Connections::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { drop(shutdown.wait_for(|s| *s).await) } => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; connections will close.
                tracing::warn!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if connections.open() >= limits.max_connections && !connections.evict_oldest_idle() {
            tracing::warn!(
                cap = limits.max_connections,
                "connection refused: every connection has a request in flight"
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, open, evicted) = connections.register();
        let io = TokioIo::new(CountedStream {
            inner: stream,
            _open: open,
        });
        tasks.spawn(serve_connection(
            io,
            id,
            router.clone(),
            connections.clone(),
            limits,
            evicted,
            shutdown.clone(),
        ));
    }
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

async fn serve_connection(
    io: TokioIo<CountedStream>,
    id: u64,
    router: Router,
    connections: Connections,
    limits: Limits,
    evicted: oneshot::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tracker = connections.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let tracker = tracker.clone();
        tracker.request_started(id);
        let expired = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
                expired: expired.clone(),
            })
        });
        async move {
            let response = router.oneshot(req).await;
            tracker.request_finished(id);
            if expired.load(Ordering::Relaxed) {
                let mut late = super::error::ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        limits.body_timeout.as_secs()
                    ),
                )
                .into_response();
                late.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return Ok::<_, std::convert::Infallible>(late);
            }
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        _ = evicted => {
            tracing::debug!(id, "connection evicted at the connection cap");
        }
        _ = async { drop(shutdown.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
    connections.served(id);
}
