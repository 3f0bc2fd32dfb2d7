//! Request bounds: how long a client may take to send a request, how many
//! expensive queries run at once, and how much one query may select.
//!
//! - **Body deadline.** [`body_deadline`], a middleware on every route,
//!   gives each request body [`ServerLimits::body_timeout`] to arrive
//!   whole, counted from the end of its headers; [`super::read_body`]
//!   turns a late body into [`ApiError::BodyTimeout`] (408). The headers
//!   themselves are bounded by hyper's header read timeout
//!   ([`ServerLimits::header_timeout`], set in [`super::serve`]).
//! - **Query slots.** [`QuerySlots`] is a semaphore of
//!   [`ServerLimits::max_concurrent_queries`] permits. The handlers that
//!   read profiles or their totals (`query_range`, `query`, `profile`,
//!   `profile/merge`, `profile/diff`) take one before their storage call
//!   and hold it until the blocking work ends (even when the client has
//!   gone), so queries cannot take every blocking thread and core from
//!   ingest. Ingest, metadata (`labels`, `series`, …) and `/metrics` take
//!   none. A query that finds every slot busy waits up to
//!   [`ServerLimits::query_queue_timeout`], then gets
//!   [`ApiError::Overloaded`] (503 with `Retry-After`).
//! - **Query size.** [`check_series`] and [`check_samples`] refuse a query
//!   that selects more than [`ServerLimits::max_query_series`] series or
//!   whose profile holds more than [`ServerLimits::max_query_samples`]
//!   samples, with [`ApiError::QueryTooLarge`] (422, Prometheus's status
//!   for a query that cannot be executed). The series are counted with
//!   [`Storage::series`](crate::engine::Storage::series) before anything
//!   is read; the samples of a profile query are counted in its
//!   [`Partial`] before it is finished and rendered.

use super::ApiError;
use crate::engine::Partial;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default [`ServerLimits::body_timeout`]: 30 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerLimits::header_timeout`]: 30 s (hyper's own default,
/// which takes effect only when the server has a timer).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerLimits::query_queue_timeout`]: 10 s.
pub const DEFAULT_QUERY_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerLimits::max_query_series`].
pub const DEFAULT_MAX_QUERY_SERIES: usize = 10_000;
/// Default [`ServerLimits::max_query_samples`]: 10 M samples. At some
/// tens of bytes per sample in the partial sums and as many again in the
/// finished profile (plus each distinct stack's frames), a profile at the
/// limit holds a GiB or more before it is rendered: far above what a
/// flame graph can show, low enough to stop a runaway merge before
/// `finish` and the renderer multiply it.
pub const DEFAULT_MAX_QUERY_SAMPLES: usize = 10_000_000;

/// Default [`ServerLimits::max_concurrent_queries`]: the number of CPUs,
/// at least 2.
pub fn default_max_concurrent_queries() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// The HTTP server's bounds on requests (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a request body may take to arrive whole, from the end of
    /// its headers.
    pub body_timeout: Duration,
    /// How long a client may take to send a request's headers (also how
    /// long an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// Expensive queries running at once (at least 1).
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before it is refused.
    pub query_queue_timeout: Duration,
    /// Most series one query may select.
    pub max_query_series: usize,
    /// Most samples (stack × pprof label values) the profile of one query
    /// may hold (each side of a diff on its own).
    pub max_query_samples: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            body_timeout: DEFAULT_BODY_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_concurrent_queries: default_max_concurrent_queries(),
            query_queue_timeout: DEFAULT_QUERY_QUEUE_TIMEOUT,
            max_query_series: DEFAULT_MAX_QUERY_SERIES,
            max_query_samples: DEFAULT_MAX_QUERY_SAMPLES,
        }
    }
}

/// `n` with thousands separators: `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in a message: `30s`, `1.5s`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Refuses a query that selects `n` series over `limit`.
pub fn check_series(n: usize, limit: usize) -> Result<(), ApiError> {
    if n > limit {
        return Err(ApiError::QueryTooLarge(format!(
            "query selects {} series, the limit is {} (limits.max_query_series); narrow the selector or the time range",
            thousands(n),
            thousands(limit)
        )));
    }
    Ok(())
}

/// The samples a partial's profile will hold: one per (pprof label values,
/// stack).
pub fn partial_samples(p: &Partial) -> usize {
    p.sums.values().map(|stacks| stacks.len()).sum()
}

/// Refuses a profile of `n` samples over `limit`.
pub fn check_samples(n: usize, limit: usize) -> Result<(), ApiError> {
    if n > limit {
        return Err(ApiError::QueryTooLarge(format!(
            "query result holds {} samples, the limit is {} (limits.max_query_samples); narrow the selector or the time range",
            thousands(n),
            thousands(limit)
        )));
    }
    Ok(())
}

/// The slots of expensive queries: a semaphore and how long to wait for it.
#[derive(Debug, Clone)]
pub struct QuerySlots {
    semaphore: Arc<Semaphore>,
    size: usize,
    queue_timeout: Duration,
}

impl QuerySlots {
    /// `size` slots (at least 1); a query waits up to `queue_timeout` for
    /// one.
    pub fn new(size: usize, queue_timeout: Duration) -> QuerySlots {
        let size = size.max(1);
        QuerySlots {
            semaphore: Arc::new(Semaphore::new(size)),
            size,
            queue_timeout,
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Takes a slot, waiting up to the queue timeout (a free slot is taken
    /// at once even with a zero timeout); [`ApiError::Overloaded`] when
    /// none came free. The slot is free again when the permit is dropped.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let wait = Arc::clone(&self.semaphore).acquire_owned();
        match tokio::time::timeout(self.queue_timeout, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed.
            Ok(Err(e)) => Err(ApiError::Internal(format!("query slots: {e}"))),
            Err(_) => Err(ApiError::Overloaded {
                slots: self.size,
                waited: self.queue_timeout,
            }),
        }
    }
}

/// The error a request body yields once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {}", human(*.0))]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] when it has not ended by
/// its deadline.
struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the request's body must arrive whole within `timeout` of
/// this call (bodies known to be empty are left alone).
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let req = req.map(|body| {
        if body.is_end_stream() {
            body
        } else {
            Body::new(DeadlineBody {
                inner: body,
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            })
        }
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn messages_name_the_setting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert!(check_series(10, 10).is_ok());
        let e = check_series(12_345, 10_000).unwrap_err();
        assert_eq!(e.status().0.as_u16(), 422);
        assert_eq!(
            e.to_string(),
            "query selects 12,345 series, the limit is 10,000 (limits.max_query_series); narrow the selector or the time range"
        );
        assert!(check_samples(5, 5).is_ok());
        let e = check_samples(6, 5).unwrap_err();
        assert_eq!(e.status().0.as_u16(), 422);
        assert!(e.to_string().contains("limits.max_query_samples"), "{e}");
    }

    #[tokio::test]
    async fn slots_are_bounded_and_waiters_give_up_after_the_queue_timeout() {
        let slots = QuerySlots::new(1, Duration::from_millis(50));
        let held = slots.acquire().await.unwrap();
        assert_eq!(slots.available(), 0);
        let started = Instant::now();
        let e = slots.acquire().await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(matches!(e, ApiError::Overloaded { slots: 1, .. }), "{e:?}");
        assert_eq!(e.status().0.as_u16(), 503);
        assert!(
            e.to_string().contains("limits.max_concurrent_queries"),
            "{e}"
        );
        // A waiter gets the slot as soon as it is released.
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test]
    async fn a_free_slot_is_taken_even_with_a_zero_queue_timeout() {
        let slots = QuerySlots::new(2, Duration::ZERO);
        let a = slots.acquire().await.unwrap();
        let _b = slots.acquire().await.unwrap();
        assert!(slots.acquire().await.is_err());
        drop(a);
        assert!(slots.acquire().await.is_ok());
        // Zero slots is one.
        assert_eq!(QuerySlots::new(0, Duration::ZERO).available(), 1);
    }
}
