//! An IO adapter that timestamps the end of the request and the first response byte.
//!
//! "First byte" is when the first byte is read from the connection (above TLS, so it is the
//! first byte of the HTTP response), not when hyper has parsed the headers. "Request written"
//! is the last successful write or flush before that first byte.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::progress::{Mark, Progress};

/// Wraps a stream and records [`Mark::Written`] and [`Mark::FirstByte`] in a [`Progress`].
pub(crate) struct Timed<'p, S> {
    io: S,
    progress: &'p Progress,
    got_first_byte: bool,
    /// A write happened since the last flush (spurious flushes must not move the mark).
    unflushed: bool,
}

impl<'p, S> Timed<'p, S> {
    pub(crate) fn new(io: S, progress: &'p Progress) -> Self {
        Timed {
            io,
            progress,
            got_first_byte: false,
            unflushed: false,
        }
    }

    #[inline]
    fn wrote(&mut self) {
        if !self.got_first_byte {
            self.unflushed = true;
            self.progress.mark(Mark::Written);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if !this.got_first_byte {
            if let Poll::Ready(Ok(())) = res {
                if buf.filled().len() > before {
                    this.got_first_byte = true;
                    this.progress.mark(Mark::FirstByte);
                }
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                this.wrote();
            }
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                this.wrote();
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = res {
            if this.unflushed && !this.got_first_byte {
                this.unflushed = false;
                this.progress.mark(Mark::Written);
            }
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
