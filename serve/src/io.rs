//! The socket and body wrappers behind the timeouts: a socket that records
//! when it last moved a byte, and a request body that fails when it stalls.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, OnceLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::Sleep,
};

use crate::ConnectionStats;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// When a connection last read or wrote, and whether it became a WebSocket.
#[derive(Debug)]
pub(crate) struct Activity {
    last_ms: AtomicU64,
    upgraded: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last_ms: AtomicU64::new(now_ms()),
            upgraded: AtomicBool::new(false),
        }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(now_ms(), Relaxed);
    }

    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_ms.load(Relaxed)))
    }

    /// Upgraded connections keep their own liveness (WebSocket pings).
    pub fn mark_upgrade(&self) {
        self.upgraded.store(true, Relaxed);
    }

    pub fn upgraded(&self) -> bool {
        self.upgraded.load(Relaxed)
    }
}

/// A TCP stream that records its activity and holds its connection slot
/// until the socket closes.
pub(crate) struct ActivityIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl ActivityIo {
    pub fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        slot: OwnedSemaphorePermit,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        ActivityIo {
            stream,
            activity,
            _slot: slot,
            stats,
        }
    }
}

impl Drop for ActivityIo {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Relaxed);
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body that fails when no chunk arrives for `timeout`, counted
/// from when the handler starts reading it.
pub(crate) struct TimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> TimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimeoutBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for {} ms (`body_read_timeout_ms`)", .0.as_millis())]
pub struct BodyStalled(pub Duration);

impl<B> Body for TimeoutBody<B>
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
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
