//! [`serve`]: the accept loop, `axum::serve` with a header read timeout.
//!
//! `axum::serve` (axum 0.8) builds hyper's connection builder without a
//! timer, and without a timer hyper's header read timeout does nothing: a
//! client could hold a connection forever by sending its headers one byte
//! at a time, or by never sending any. This loop is axum's (axum's accept
//! with its retry on errors, one hyper connection per task, graceful
//! shutdown that finishes in-flight requests) with hyper's Tokio timer and
//! `header_read_timeout` set. It uses hyper's HTTP/1 builder, not
//! hyper-util's `auto` builder as axum does: the daemon speaks HTTP/1 only
//! (axum's `http2` feature is off), and `auto` first waits, with no
//! timeout, for the bytes that tell HTTP/1 from HTTP/2, so a client that
//! connects and sends nothing would escape the header timeout.

use axum::serve::Listener;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (idle connections close at
/// once) and returns when every connection has closed.
///
/// A client must send a request's headers within `header_timeout` (this
/// also closes keep-alive connections idle for that long); the body's own
/// deadline is a middleware of the router ([`super::limits::body_deadline`]).
pub async fn serve<F>(mut listener: TcpListener, app: Router, header_timeout: Duration, shutdown: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    // `stop` tells the connections to shut down gracefully; every
    // connection task holds a `done` receiver, so `done_tx.closed()`
    // resolves when the last one ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            conn = Listener::accept(&mut listener) => conn,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(%peer, "connection ended: {e}");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stop| *stop), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(true);
    done_tx.closed().await;
}
