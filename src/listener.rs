//! The HTTP acceptor that keeps the service reachable when clients misbehave.
//!
//! Every connection costs a file descriptor, and when the process runs out of them it can open
//! neither its database nor a socket to AWS, and `/healthz` stops answering. So the acceptor
//! ([`Guarded`]):
//! - caps the connections open at once ([`Limits::max_connections`], by default the descriptor
//!   limit minus a reserve for the store, AWS and logs): past the cap, new connections wait in
//!   the kernel's backlog until one closes, instead of being accepted into descriptor exhaustion;
//! - closes a connection whose request head (request line and headers) is not complete within
//!   [`Limits::header_timeout`] of its first byte, or of the connection's opening for the first
//!   request (a slowloris client that never finishes its headers);
//! - leaves idle keep-alive connections to poem's idle timeout (`Server::idle_timeout`).

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Descriptors kept for everything but HTTP connections (the store, AWS, logs, files).
pub const FD_RESERVE: usize = 256;

/// How connections are limited.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// The soft limit on open file descriptors of this process (`RLIMIT_NOFILE`), when known.
pub fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The default connection cap: the descriptor limit less [`FD_RESERVE`], at least 16.
pub fn default_max_connections() -> usize {
    descriptor_limit()
        .unwrap_or(1024)
        .saturating_sub(FD_RESERVE)
        .max(16)
}

/// An acceptor wrapped with the connection cap and the header timeout.
pub struct Guarded<A> {
    inner: A,
    permits: Arc<Semaphore>,
    limits: Limits,
    /// Whether the cap was reached and not yet logged (one line per episode).
    saturated: Arc<AtomicBool>,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, limits: Limits) -> Self {
        Guarded {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            saturated: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<A: Acceptor> Acceptor for Guarded<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = self.limits.max_connections,
                        "the HTTP connection cap is reached; new connections wait until one closes"
                    );
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(io::Error::other)?
            }
        };
        if self.permits.available_permits() > self.limits.max_connections / 10 {
            self.saturated.store(false, Ordering::Relaxed);
        }
        match self.inner.accept().await {
            Ok((io, local, remote, scheme)) => Ok((
                GuardedIo::new(io, permit, self.limits.header_timeout),
                local,
                remote,
                scheme,
            )),
            Err(e) => {
                // Out of descriptors (EMFILE) or similar: poem tries again at once, so pause
                // rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(e)
            }
        }
    }
}

/// Where a connection is in its current request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Head {
    /// Waiting for (the rest of) a request head; `matched` bytes of "\r\n\r\n" seen last.
    Reading { matched: u8 },
    /// The head is complete; the next response re-arms the check.
    Complete,
    /// HTTP/2: no request heads on this connection to time.
    Off,
}

/// A connection: holds its place under the cap until dropped, and fails its reads once a request
/// head takes longer than the header timeout.
pub struct GuardedIo<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    head: Head,
    header_timeout: Duration,
    /// Armed while a head is being read.
    deadline: Option<Pin<Box<Sleep>>>,
    first_bytes: bool,
}

impl<IO> GuardedIo<IO> {
    fn new(io: IO, permit: OwnedSemaphorePermit, header_timeout: Duration) -> Self {
        GuardedIo {
            io,
            _permit: permit,
            head: Head::Reading { matched: 0 },
            header_timeout,
            // The first request's head is timed from the opening of the connection.
            deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            first_bytes: true,
        }
    }

    /// Follows the request head through the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if std::mem::take(&mut self.first_bytes) && bytes.starts_with(b"PRI * HTTP/2") {
            self.head = Head::Off;
            self.deadline = None;
            return;
        }
        let Head::Reading { mut matched } = self.head else {
            return;
        };
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.header_timeout)));
        }
        const END: &[u8; 4] = b"\r\n\r\n";
        for &b in bytes {
            matched = if b == END[matched as usize] {
                matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if matched == 4 {
                self.head = Head::Complete;
                self.deadline = None;
                return;
            }
        }
        self.head = Head::Reading { matched };
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for GuardedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled()[before..].to_vec();
                this.saw(&filled);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head was not complete within the header timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for GuardedIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        // A response: the next request's head is timed from its first byte.
        if this.head == Head::Complete {
            this.head = Head::Reading { matched: 0 };
            this.deadline = None;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_is_read_from_the_process() {
        assert!(descriptor_limit().is_some_and(|n| n > 0));
        assert!(default_max_connections() >= 16);
    }
}
