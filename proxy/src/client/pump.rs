//! The hot path: bytes both ways between a client and the server it holds,
//! in one task, with no lock and no allocation per message.
//!
//! Each direction reads into its buffer, scans message headers (only
//! ReadyForQuery and ParameterStatus are looked into), and writes the
//! scanned bytes on. Both directions are polled in the same `poll`, so a
//! server blocked writing results never stops the client's data from being
//! read, and vice versa: no deadlock on large pipelines or COPY.

use super::pump_prepared::{self as prepared, Prepared};
use crate::config::PoolMode;
use crate::prepared::message::Malformed;
use crate::prepared::responses::Responses;
use crate::protocol::backend;
use crate::protocol::frame::{Flow, FrameError, Inspect, Scanner, Want, HEADER_LEN};
use crate::protocol::frontend;
use crate::registry::kill::Fired;
use crate::server::params::ParamSet;
use crate::tls::Stream;
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;
use tokio_util::sync::CancellationToken;

/// Read size; a buffer grows past it only to hold one whole inspected message.
pub const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub enum Outcome {
    /// Transaction over, server idle: give it back (transaction/statement mode).
    Released,
    /// The client sent Terminate or closed its socket.
    ClientClosed,
    ClientIo(std::io::Error),
    ClientProtocol(FrameError),
    /// A Parse/Bind/Describe/Close pgwolf could not read.
    ClientMalformed(Malformed),
    ServerClosed,
    ServerIo(std::io::Error),
    ServerProtocol(FrameError),
    /// Statement mode and the server reported an open transaction.
    StatementModeTransaction,
    /// Shutdown was asked and the client is between transactions.
    Shutdown,
    /// KILL or KILL_CLIENT from the admin console: end now, mid-transaction
    /// or not.
    Killed,
    /// The server connection's member lost its role (a new primary, a
    /// member gone): its pool retired it, and the transaction ends now.
    ServerRetired,
    /// Idle too long; `in_transaction` tells which timeout fired.
    IdleTimeout {
        in_transaction: bool,
    },
    /// `query_timeout` or `transaction_timeout` ran out; `server_busy`:
    /// a request was still unanswered (the server gets a cancel).
    Timeout {
        which: Limit,
        server_busy: bool,
    },
}

/// Which bound on a server's answer ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Query,
    Transaction,
}

/// What the proxy knows of the conversation's state.
#[derive(Debug)]
pub struct Track {
    /// Requests (Query, Sync, FunctionCall) not yet answered by ReadyForQuery.
    pub outstanding: u32,
    /// Extended-protocol messages sent after the last Sync.
    pub dirty: bool,
    /// Syncs sent since the last Execute or Query. If that request turns
    /// out to be a COPY FROM STDIN (the client then sends CopyDone or
    /// CopyFail), the server ignored these Syncs: it drops Sync in copy-in
    /// mode, so no ReadyForQuery will answer them.
    pub syncs_since_execute: u32,
    /// Status byte of the last ReadyForQuery.
    pub status: u8,
    /// Tag of the last message started from the server.
    pub last_server_tag: u8,
    /// For SHOW STATS: requests (Query, Sync, FunctionCall) sent, bytes
    /// forwarded each way, and the time the server spent answering.
    pub queries: u32,
    pub received: u64,
    pub sent: u64,
    pub busy_since: Option<std::time::Instant>,
    /// When the transaction block the server reports (status not 'I')
    /// began, as near as pgwolf saw it: for `transaction_timeout`.
    pub tx_since: Option<std::time::Instant>,
    /// When the server last answered every request (the clock reading
    /// that timed it): the transaction's end, for its release.
    pub idle_since: Option<std::time::Instant>,
    pub query_us: u64,
    /// This transaction's request durations, by histogram bucket.
    pub query_buckets: [u16; crate::pool::histogram::BUCKETS],
}

impl Track {
    fn request(&mut self) {
        if self.outstanding == 0 {
            self.busy_since = Some(std::time::Instant::now());
        }
        self.outstanding += 1;
        self.queries += 1;
    }
}

impl Default for Track {
    fn default() -> Self {
        Track {
            outstanding: 0,
            dirty: false,
            syncs_since_execute: 0,
            status: backend::TX_IDLE,
            last_server_tag: 0,
            queries: 0,
            received: 0,
            sent: 0,
            busy_since: None,
            tx_since: None,
            idle_since: None,
            query_us: 0,
            query_buckets: [0; crate::pool::histogram::BUCKETS],
        }
    }
}

impl Track {
    /// Nothing pending on either side and not inside a transaction.
    pub fn idle(&self) -> bool {
        self.status == backend::TX_IDLE && self.outstanding == 0 && !self.dirty
    }
}

/// The client direction's inspector. Public only for the micro-benchmarks
/// in `benches/`, which must measure this code, not a copy of it.
#[doc(hidden)]
/// The bool: the client has named statements (so a simple Query may be a
/// `DEALLOCATE` pgwolf answers).
pub struct ClientSide<'a>(pub &'a mut Track, pub Option<&'a mut Responses>, pub bool);

impl Inspect for ClientSide<'_> {
    fn header(&mut self, tag: u8, _len: usize) -> Want {
        let want = match self.1.as_deref_mut() {
            Some(r) if tag != frontend::TERMINATE => prepared::client_header(r, tag, self.2),
            _ => None,
        };
        let t = &mut *self.0;
        match tag {
            frontend::TERMINATE => return Want::StopBefore,
            frontend::SYNC => {
                t.request();
                t.syncs_since_execute += 1;
                t.dirty = false;
            }
            frontend::QUERY | frontend::FUNCTION_CALL => {
                t.request();
                t.syncs_since_execute = 0;
                t.dirty = false;
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                t.outstanding -= t.syncs_since_execute.min(t.outstanding);
                t.syncs_since_execute = 0;
            }
            // CopyData belongs to the request in progress; Flush leaves no
            // state behind.
            frontend::COPY_DATA | frontend::FLUSH => {}
            frontend::EXECUTE => {
                t.syncs_since_execute = 0;
                t.dirty = true;
            }
            _ => t.dirty = true,
        }
        want.unwrap_or(Want::Pass)
    }

    fn message(&mut self, tag: u8, body: &[u8]) -> Flow {
        match self.1.as_deref_mut() {
            Some(r) => prepared::client_message(r, tag, body),
            None => Flow::Continue,
        }
    }
}

/// The server direction's inspector; public for the benches as `ClientSide`.
#[doc(hidden)]
pub struct ServerSide<'a, 'p> {
    pub track: &'a mut Track,
    pub server_params: &'a mut ParamSet,
    pub client_params: &'a mut Arc<ParamSet>,
    pub prepared: Option<&'a mut Prepared<'p>>,
}

impl Inspect for ServerSide<'_, '_> {
    fn header(&mut self, tag: u8, _len: usize) -> Want {
        self.track.last_server_tag = tag;
        if let Some(want) = self
            .prepared
            .as_deref_mut()
            .and_then(|p| prepared::server_header(p, tag))
        {
            return want;
        }
        match tag {
            backend::READY_FOR_QUERY | backend::PARAMETER_STATUS => Want::Whole,
            _ => Want::Pass,
        }
    }

    fn message(&mut self, tag: u8, body: &[u8]) -> Flow {
        let managed = self
            .prepared
            .as_deref_mut()
            .and_then(|p| prepared::server_message(p, tag, body));
        if managed == Some(Flow::Take) {
            return Flow::Take;
        }
        if tag == backend::READY_FOR_QUERY {
            let t = &mut *self.track;
            t.status = body.first().copied().unwrap_or(backend::TX_IDLE);
            t.outstanding = t.outstanding.saturating_sub(1);
            if t.status == backend::TX_IDLE {
                t.tx_since = None;
            } else if t.tx_since.is_none() {
                // Began with the request just answered.
                t.tx_since = t.busy_since.or_else(|| Some(Instant::now()));
            }
            if t.outstanding == 0 {
                if let Some(since) = t.busy_since.take() {
                    let now = std::time::Instant::now();
                    t.idle_since = Some(now);
                    let us = (now - since).as_micros() as u64;
                    t.query_us += us;
                    let b = &mut t.query_buckets[crate::pool::histogram::bucket(us)];
                    *b = b.saturating_add(1);
                }
            }
            return Flow::StopAfter;
        }
        // The client changed a setting (SET TimeZone ...): both sides now have it.
        // Other whole messages (answers to managed statements) are no settings.
        if tag == backend::PARAMETER_STATUS {
            if let Some((name, value)) = backend::parse_parameter_status(body) {
                self.server_params.observe(name, value);
                ParamSet::observe_shared(self.client_params, name, value);
            }
        }
        managed.unwrap_or(Flow::Continue)
    }
}

/// Borrowed pieces of one client session and its server, for one pump run.
pub struct Pump<'a> {
    pub client: &'a mut Stream,
    pub cbuf: &'a mut BytesMut,
    pub cscan: &'a mut Scanner,
    pub server: &'a mut Stream,
    pub sbuf: &'a mut BytesMut,
    pub server_params: &'a mut ParamSet,
    pub client_params: &'a mut Arc<ParamSet>,
    pub track: &'a mut Track,
    pub mode: PoolMode,
    pub max_packet: u32,
    /// `max_pipelined_requests`: no more client bytes are read while this
    /// many requests await their answers.
    pub max_pipelined: usize,
    /// The client's kill switch: fired by KILL/KILL_CLIENT, or once
    /// `draining` is, or when the pool retires the server's generation.
    pub kill: &'a crate::registry::kill::Kill,
    /// The pool generation the server connection was made for.
    pub server_generation: u64,
    /// The process's shutdown: when it is what fired, the transaction in
    /// flight finishes first.
    pub draining: &'a CancellationToken,
    /// None when no idle timeout is configured.
    pub timer: Option<Pin<&'a mut Sleep>>,
    pub idle_transaction_timeout: Duration,
    pub client_idle_timeout: Duration,
    /// A request unanswered this long ends the transaction; 0 = never.
    pub query_timeout: Duration,
    /// A transaction open this long is ended; 0 = never.
    pub transaction_timeout: Duration,
    /// Managed prepared statements; None passes them through untouched.
    pub prepared: Option<Prepared<'a>>,
}

/// Per-run state that does not outlive the pump.
#[derive(Default)]
struct Run {
    sscan: Scanner,
    c_ready: usize,
    s_ready: usize,
    /// A client message after the ready bytes, taken for the rewriter.
    c_taken: usize,
    /// A server message after the ready bytes, to be dropped.
    s_taken: usize,
    /// Scan the server's buffer again once the bytes before are written.
    s_rescan: bool,
    client_stopped: bool,
    release: bool,
    statement_violation: bool,
    shutting_down: bool,
    last_client: Option<Instant>,
    /// This poll already found the client's (server's) socket with nothing
    /// to read and left the task's waker with it: asking again before the
    /// task next wakes would only register that waker again (tokio's
    /// `poll_ready`: 184 instructions per `-S` transaction, callgrind).
    client_parked: bool,
    server_parked: bool,
}

impl Pump<'_> {
    pub async fn run(mut self) -> Outcome {
        // The client just sent: the idle clock starts when the pump first
        // waits (poll_waits reads it then, and only with a timeout set).
        let mut run = Run::default();
        if let Err(e) = self.scan_client(&mut run) {
            return Outcome::ClientProtocol(e);
        }
        std::future::poll_fn(|cx| self.poll(cx, &mut run)).await
    }

    fn scan_client(&mut self, run: &mut Run) -> Result<(), FrameError> {
        let names_known = self.prepared.as_ref().is_some_and(|p| !p.names.is_empty());
        let responses = self.prepared.as_mut().map(|p| &mut *p.responses);
        let s = self.cscan.scan(
            self.cbuf,
            self.max_packet,
            &mut ClientSide(self.track, responses, names_known),
        )?;
        run.c_ready = s.ready;
        run.c_taken = s.taken;
        run.client_stopped = s.stopped && s.taken == 0;
        Ok(())
    }

    fn scan_server(&mut self, run: &mut Run) -> Result<(), FrameError> {
        loop {
            let s = run.sscan.scan(
                self.sbuf,
                self.max_packet,
                &mut ServerSide {
                    track: self.track,
                    server_params: self.server_params,
                    client_params: self.client_params,
                    prepared: self.prepared.as_mut(),
                },
            )?;
            run.s_ready = s.ready;
            if !s.stopped {
                return Ok(());
            }
            if s.taken > 0 {
                // Written up to it, dropped, then scanning resumes.
                run.s_taken = s.taken;
                return Ok(());
            }
            if self.track.last_server_tag == backend::READY_FOR_QUERY {
                // Is this the end of the client's transaction?
                if self.mode == PoolMode::Statement && self.track.status != backend::TX_IDLE {
                    run.statement_violation = true;
                    return Ok(());
                }
                let nothing_in_flight = self
                    .prepared
                    .as_ref()
                    .is_none_or(|p| p.responses.is_empty() && p.to_server.is_empty());
                let client_quiet = run.c_ready == 0 && run.c_taken == 0 && self.cscan.at_boundary();
                if self.mode != PoolMode::Session
                    && self.track.idle()
                    && client_quiet
                    && nothing_in_flight
                {
                    run.release = true;
                    return Ok(());
                }
            }
            if self
                .prepared
                .as_ref()
                .is_some_and(|p| !p.to_client.is_empty())
            {
                // pgwolf's own answers go out before the server's next bytes.
                run.s_rescan = true;
                return Ok(());
            }
        }
    }

    /// The client message taken by the scanner goes through the rewriter.
    fn rewrite_taken(&mut self, run: &mut Run) -> Result<(), Outcome> {
        let msg = self.cbuf.split_to(run.c_taken);
        self.cscan.consumed(run.c_taken);
        run.c_taken = 0;
        let p = self
            .prepared
            .as_mut()
            .expect("messages are taken only when prepared statements are managed");
        if msg[0] == frontend::QUERY
            && crate::prepared::deallocate::answer(
                p.names,
                &msg[HEADER_LEN..],
                self.track.status,
                p.to_client,
            )
        {
            // Answered with its ReadyForQuery: the server owes none for it.
            self.track.outstanding -= 1;
            return Ok(());
        }
        let mut to_server = std::mem::take(p.to_server);
        let r = p.rewriter().client_message(&msg, &mut to_server);
        *p.to_server = to_server;
        r.map_err(Outcome::ClientMalformed)?;
        p.responses.answer_due(p.to_client);
        Ok(())
    }

    fn poll(&mut self, cx: &mut Context<'_>, run: &mut Run) -> Poll<Outcome> {
        // Before any byte moves: a KILL wakes this task, and a request the
        // client sent after it may be readable by then; checked only once
        // nothing moved, that request was forwarded and answered first.
        if !run.shutting_down {
            match self.kill.poll_fired(cx, self.server_generation) {
                Poll::Ready(Fired::Retired) => return Poll::Ready(Outcome::ServerRetired),
                Poll::Ready(Fired::Killed) if !self.draining.is_cancelled() => {
                    return Poll::Ready(Outcome::Killed)
                }
                // A shutdown lets the transaction in flight finish.
                Poll::Ready(Fired::Killed) => run.shutting_down = true,
                Poll::Pending => {}
            }
        }
        run.client_parked = false;
        run.server_parked = false;
        loop {
            let mut progress = false;

            // Client to server, unless the transaction has just ended.
            if !run.release && !run.statement_violation {
                match self.poll_client(cx, run) {
                    Poll::Ready(Some(outcome)) => return Poll::Ready(outcome),
                    Poll::Ready(None) => progress = true,
                    Poll::Pending => {}
                }
            }

            // Server to client.
            match self.poll_server(cx, run) {
                Poll::Ready(Some(outcome)) => return Poll::Ready(outcome),
                Poll::Ready(None) => progress = true,
                Poll::Pending => {}
            }

            if !progress {
                return self.poll_waits(cx, run);
            }
        }
    }

    /// One step client to server: `Ready(None)` when something moved.
    fn poll_client(&mut self, cx: &mut Context<'_>, run: &mut Run) -> Poll<Option<Outcome>> {
        // Rewritten messages first: they stood before the bytes now ready,
        // which go in the same write (a renamed Bind and the Execute/Sync
        // after it: one syscall, as without rewriting).
        if let Some(p) = self.prepared.as_mut().filter(|p| !p.to_server.is_empty()) {
            let bufs = [
                std::io::IoSlice::new(p.to_server),
                std::io::IoSlice::new(&self.cbuf[..run.c_ready]),
            ];
            return match Pin::new(&mut *self.server).poll_write_vectored(cx, &bufs) {
                Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ServerClosed)),
                Poll::Ready(Ok(n)) => {
                    self.track.received += n as u64;
                    let own = n.min(p.to_server.len());
                    p.to_server.advance(own);
                    let rest = n - own;
                    self.cbuf.advance(rest);
                    self.cscan.consumed(rest);
                    run.c_ready -= rest;
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ServerIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if run.c_ready > 0 {
            return match Pin::new(&mut *self.server).poll_write(cx, &self.cbuf[..run.c_ready]) {
                Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ServerClosed)),
                Poll::Ready(Ok(n)) => {
                    self.track.received += n as u64;
                    self.cbuf.advance(n);
                    self.cscan.consumed(n);
                    run.c_ready -= n;
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ServerIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if self.server.wants_flush() {
            // TLS bytes rustls accepted but the socket has not taken yet.
            return match Pin::new(&mut *self.server).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ServerIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if run.c_taken > 0 {
            if let Err(outcome) = self.rewrite_taken(run) {
                return Poll::Ready(Some(outcome));
            }
            if let Err(e) = self.scan_client(run) {
                return Poll::Ready(Some(Outcome::ClientProtocol(e)));
            }
            return Poll::Ready(None);
        }
        if run.client_stopped {
            return Poll::Ready(Some(Outcome::ClientClosed));
        }
        if self
            .prepared
            .as_ref()
            .is_some_and(|p| p.responses.awaiting_server() >= self.max_pipelined)
        {
            // Back-pressure on a pipelining client: each request in flight
            // holds a record here, and the socket buffers in between could
            // take hundreds of thousands. The answers, read on the server
            // side of this same poll, wake the task again.
            return Poll::Pending;
        }
        if run.client_parked {
            return Poll::Pending;
        }
        super::buffers::reserve(self.cbuf);
        match poll_read_buf(Pin::new(&mut *self.client), cx, self.cbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ClientClosed)),
            Poll::Ready(Ok(_)) => {
                run.last_client = None;
                if let Err(e) = self.scan_client(run) {
                    return Poll::Ready(Some(Outcome::ClientProtocol(e)));
                }
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ClientIo(e))),
            Poll::Pending => {
                run.client_parked = true;
                Poll::Pending
            }
        }
    }

    /// One step server to client: `Ready(None)` when something moved.
    fn poll_server(&mut self, cx: &mut Context<'_>, run: &mut Run) -> Poll<Option<Outcome>> {
        if run.s_ready > 0 {
            return match Pin::new(&mut *self.client).poll_write(cx, &self.sbuf[..run.s_ready]) {
                Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ClientClosed)),
                Poll::Ready(Ok(n)) => {
                    self.track.sent += n as u64;
                    self.sbuf.advance(n);
                    run.sscan.consumed(n);
                    run.s_ready -= n;
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ClientIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if run.s_taken > 0 {
            // An answer to pgwolf's own request: the client never sees it.
            self.sbuf.advance(run.s_taken);
            run.sscan.consumed(run.s_taken);
            run.s_taken = 0;
            run.s_rescan = true;
        }
        if let Some(p) = self.prepared.as_mut().filter(|p| !p.to_client.is_empty()) {
            return match Pin::new(&mut *self.client).poll_write(cx, p.to_client) {
                Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ClientClosed)),
                Poll::Ready(Ok(n)) => {
                    self.track.sent += n as u64;
                    p.to_client.advance(n);
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ClientIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if self.client.wants_flush() {
            // Before the transaction may end and before more is read: what
            // the client was sent must reach its socket.
            return match Pin::new(&mut *self.client).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ClientIo(e))),
                Poll::Pending => Poll::Pending,
            };
        }
        if run.s_rescan {
            run.s_rescan = false;
            if let Err(e) = self.scan_server(run) {
                return Poll::Ready(Some(Outcome::ServerProtocol(e)));
            }
            return Poll::Ready(None);
        }
        if run.release {
            return Poll::Ready(Some(Outcome::Released));
        }
        if run.statement_violation {
            return Poll::Ready(Some(Outcome::StatementModeTransaction));
        }
        if run.server_parked {
            return Poll::Pending;
        }
        super::buffers::reserve(self.sbuf);
        match poll_read_buf(Pin::new(&mut *self.server), cx, self.sbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Outcome::ServerClosed)),
            Poll::Ready(Ok(_)) => {
                if let Err(e) = self.scan_server(run) {
                    return Poll::Ready(Some(Outcome::ServerProtocol(e)));
                }
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Outcome::ServerIo(e))),
            Poll::Pending => {
                run.server_parked = true;
                Poll::Pending
            }
        }
    }

    /// Nothing moved: end a draining client between transactions, or arm
    /// the idle timeouts.
    fn poll_waits(&mut self, cx: &mut Context<'_>, run: &mut Run) -> Poll<Outcome> {
        let quiet = run.c_ready == 0
            && run.s_ready == 0
            && self.cscan.at_boundary()
            && self.prepared.as_ref().is_none_or(|p| p.idle());
        if run.shutting_down && quiet && self.track.idle() {
            return Poll::Ready(Outcome::Shutdown);
        }
        let waiting_on_client = quiet && self.track.outstanding == 0;
        let in_tx = self.track.status != backend::TX_IDLE || self.track.dirty;
        let idle_limit = match (waiting_on_client, in_tx) {
            (false, _) => Duration::ZERO,
            (true, true) => self.idle_transaction_timeout,
            (true, false) => self.client_idle_timeout,
        };
        // The common case, no bound on the server's answer: as cheap as
        // before query_timeout and transaction_timeout existed.
        let bounded = !self.query_timeout.is_zero() || !self.transaction_timeout.is_zero();
        if idle_limit.is_zero() && !bounded {
            return Poll::Pending;
        }
        let server_busy = self.track.outstanding > 0;
        let query_limit = match self.track.busy_since {
            Some(since) if server_busy && !self.query_timeout.is_zero() => {
                Some(since + self.query_timeout)
            }
            _ => None,
        };
        let tx_limit = match self.track.tx_since.or(self.track.busy_since) {
            Some(since) if !self.transaction_timeout.is_zero() => {
                Some(since + self.transaction_timeout)
            }
            _ => None,
        };
        if idle_limit.is_zero() && query_limit.is_none() && tx_limit.is_none() {
            return Poll::Pending;
        }
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        // The clock is read only here, when the pump is about to sleep.
        let idle_deadline = (!idle_limit.is_zero()).then(|| {
            let since = *run.last_client.get_or_insert_with(Instant::now);
            since + idle_limit
        });
        let (deadline, fired) = [
            idle_deadline.map(|d| (d, None)),
            query_limit.map(|d| (d, Some(Limit::Query))),
            tx_limit.map(|d| (d, Some(Limit::Transaction))),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(d, _)| *d)
        .expect("one limit at least");
        let deadline = tokio::time::Instant::from_std(deadline);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(match fired {
                None => Outcome::IdleTimeout {
                    in_transaction: in_tx,
                },
                Some(which) => Outcome::Timeout { which, server_busy },
            });
        }
        Poll::Pending
    }
}
