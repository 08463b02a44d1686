//! What one client connection may cost: timeouts for each way a connection
//! can stall, the request-head size, and JSON bodies for the errors the HTTP
//! library answers on its own.
//!
//! A connection is always in one of three phases, shared by the socket
//! wrapper ([`WatchedIo`]) and the per-request service:
//!
//! - **idle**: waiting for the first byte of a request (a new connection, or
//!   keep-alive between requests). Closed after `HTTP_IDLE_TIMEOUT_MS`.
//! - **head**: a request has started but its headers are not complete.
//!   Closed after `HTTP_HEADER_READ_TIMEOUT_MS` from its first byte.
//! - **busy**: a request is being served. Its body must arrive within
//!   `HTTP_BODY_READ_TIMEOUT_MS` of the head ([`TimedBody`]); the handler
//!   itself is bounded by the database timeouts.
//!
//! hyper answers a request it cannot parse (garbage, a bad `Content-Length`,
//! HTTP/0.9, too many or too large headers) with a bare 400 or 431 before any
//! application code runs. hyper has no hook for that response, so the socket
//! wrapper recognises it as it is written (a 4xx without the `x-request-id`
//! every application response carries) and writes the same status with the
//! usual JSON error body, a request id and a log line instead.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::config::Config;
use crate::error::ApiError;
use crate::telemetry;

/// The serving limits, read once from [`Config`].
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`.
    pub idle_timeout: Duration,
    /// `HTTP_BODY_READ_TIMEOUT_MS`.
    pub body_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `HTTP_MAX_HEADER_BYTES` (hyper's read buffer limit).
    pub max_header_bytes: usize,
    /// `SHUTDOWN_DRAIN_SECONDS`.
    pub drain: Duration,
}

impl ServeLimits {
    /// The limits a configuration names.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(config.http_header_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.http_idle_timeout_ms),
            body_read_timeout: Duration::from_millis(config.http_body_read_timeout_ms),
            max_connections: config.http_max_connections,
            max_header_bytes: config.http_max_header_bytes,
            drain: Duration::from_secs(config.shutdown_drain_seconds),
        }
    }
}

/// Why a connection was closed by a timeout (the `kind` label of
/// [`telemetry::CONNECTION_ERRORS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// No request started within the idle timeout.
    Idle,
    /// A request's head did not complete within the header timeout.
    Header,
}

impl Stall {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle_timeout",
            Self::Header => "header_timeout",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Idle { since: Instant },
    Head { since: Instant },
    Busy { requests: u32 },
}

/// One connection's phase, shared by its socket and its service.
#[derive(Debug)]
pub struct ConnectionState {
    phase: Mutex<Phase>,
    /// The connection task, parked on a read while a request was served:
    /// woken when the request ends so the idle timeout starts counting.
    parked_reader: Mutex<Option<std::task::Waker>>,
    stalled: Mutex<Option<Stall>>,
    limits: ServeLimits,
    peer: SocketAddr,
}

impl ConnectionState {
    /// A new connection, idle from now.
    pub fn new(limits: ServeLimits, peer: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            parked_reader: Mutex::new(None),
            stalled: Mutex::new(None),
            limits,
            peer,
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: an idle connection has started a request.
    fn bytes_arrived(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    /// A request's head is complete and it is being served. The returned
    /// guard marks it finished (and the connection idle again) when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
        RequestGuard(Arc::clone(self))
    }

    /// When the current phase's timeout expires, if it has one.
    fn deadline(&self) -> Option<(Instant, Stall)> {
        match *self.phase() {
            Phase::Idle { since } => Some((since + self.limits.idle_timeout, Stall::Idle)),
            Phase::Head { since } => Some((since + self.limits.header_read_timeout, Stall::Header)),
            Phase::Busy { .. } => None,
        }
    }

    /// Which timeout closed the connection, if one did.
    pub fn stalled(&self) -> Option<Stall> {
        *self.stalled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body deadline of a request whose head is complete now.
    pub fn body_deadline(&self) -> Instant {
        Instant::now() + self.limits.body_read_timeout
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Marks a request finished when dropped (even if the client went away).
pub struct RequestGuard(Arc<ConnectionState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        };
        drop(phase);
        let parked = self
            .0
            .parked_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

/// The client socket as hyper sees it: reads fail with `TimedOut` once the
/// connection has been idle, or in an unfinished head, for too long, and
/// hyper's bare error responses are replaced by JSON ones.
pub struct WatchedIo<T> {
    inner: T,
    state: Arc<ConnectionState>,
    timer: Pin<Box<Sleep>>,
    rewrite: Rewrite,
}

/// Whether hyper's bare error response is being replaced.
enum Rewrite {
    /// Writes go to the socket unchanged.
    Pass,
    /// The JSON replacement is being written.
    Writing { bytes: Bytes, written: usize },
    /// The replacement was written; anything hyper writes after it is dropped.
    Done,
}

impl<T> WatchedIo<T> {
    /// Wraps a freshly accepted socket.
    pub fn new(inner: T, state: Arc<ConnectionState>) -> Self {
        let (deadline, _) = state
            .deadline()
            .unwrap_or((Instant::now() + state.limits.idle_timeout, Stall::Idle));
        Self {
            inner,
            state,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            rewrite: Rewrite::Pass,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some((deadline, stall)) = this.state.deadline() else {
                    *this
                        .state
                        .parked_reader
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                    return Poll::Pending;
                };
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        *this.state.stalled.lock().unwrap_or_else(|e| e.into_inner()) = Some(stall);
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, stall.label())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Rewrite::Pass = this.rewrite {
            if let Some(bytes) = json_for_bare_error(buf, this.state.peer) {
                this.rewrite = Rewrite::Writing { bytes, written: 0 };
            }
        }
        match &mut this.rewrite {
            Rewrite::Pass => Pin::new(&mut this.inner).poll_write(cx, buf),
            // hyper writes nothing after its error response.
            Rewrite::Done => Poll::Ready(Ok(buf.len())),
            Rewrite::Writing { bytes, written } => {
                while *written < bytes.len() {
                    match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                        }
                        Poll::Ready(Ok(n)) => *written += n,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                // The replacement stands for all of hyper's bytes.
                this.rewrite = Rewrite::Done;
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// If `buf` is hyper's own error response (a 4xx head with no
/// `x-request-id`), the JSON response to send instead.
fn json_for_bare_error(buf: &[u8], peer: SocketAddr) -> Option<Bytes> {
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut head = httparse::Response::new(&mut headers);
    if !matches!(head.parse(buf), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    if head
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(crate::http::REQUEST_ID))
    {
        return None;
    }
    let status = head.code?;
    let error = match status {
        431 => ApiError::HeadersTooLarge,
        414 => ApiError::BadRequest("the request target is too long".into()),
        _ => ApiError::BadRequest("the request is not valid HTTP/1.1".into()),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    telemetry::record_malformed_request(status, error.code(), &request_id, peer);
    Some(raw_error_response(status, &error, &request_id, &[]))
}

/// An error response written straight to a socket (no request was parsed):
/// the JSON error body, the request id, and `Connection: close`.
pub fn raw_error_response(
    status: u16,
    error: &ApiError,
    request_id: &str,
    extra_headers: &[(&str, &str)],
) -> Bytes {
    let body = serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}})
        .to_string();
    let reason = warp::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{}: {request_id}\r\n",
        body.len(),
        crate::http::REQUEST_ID,
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    Bytes::from(head)
}

/// A request body that fails once its deadline passes without the body
/// having arrived in full.
pub struct TimedBody<B> {
    inner: B,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`; it must be read in full by `deadline`.
    pub fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            done: false,
        }
    }
}

/// The body did not arrive within `HTTP_BODY_READ_TIMEOUT_MS`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    telemetry::record_body_timeout();
                    Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn a_bare_error_from_the_http_layer_becomes_json() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = json_for_bare_error(bare, peer()).expect("rewritten");
        let text = String::from_utf8(json.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("x-request-id: "));
        assert!(text.ends_with(
            r#"{"error":{"code":"headers_too_large","message":"request header fields too large"}}"#
        ));
    }

    #[test]
    fn application_responses_are_left_alone() {
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-request-id: abc\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_for_bare_error(ours, peer()).is_none());
        assert!(json_for_bare_error(b"HTTP/1.1 200 OK\r\n\r\n", peer()).is_none());
        assert!(json_for_bare_error(b"{\"roll_number\":1}", peer()).is_none());
    }

    #[tokio::test]
    async fn the_deadline_follows_the_phase() {
        let second = Duration::from_secs(1);
        let limits = ServeLimits {
            header_read_timeout: 2 * second,
            idle_timeout: 5 * second,
            body_read_timeout: 3 * second,
            max_connections: 1,
            max_header_bytes: 8192,
            drain: second,
        };
        let start = Instant::now();
        let state = ConnectionState::new(limits, peer());
        let (idle, stall) = state.deadline().unwrap();
        assert_eq!(stall, Stall::Idle);
        assert!(idle >= start + 5 * second && idle < Instant::now() + 5 * second + second);
        state.bytes_arrived();
        let (head, stall) = state.deadline().unwrap();
        assert_eq!(stall, Stall::Header);
        assert!(head < idle, "the header deadline runs from the first byte");
        let guard = state.request_started();
        assert_eq!(state.deadline(), None, "no read deadline while serving");
        state.bytes_arrived();
        assert_eq!(state.deadline(), None, "body bytes do not restart the head");
        drop(guard);
        assert_eq!(state.deadline().unwrap().1, Stall::Idle);
    }
}
