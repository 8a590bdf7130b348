//! One logged-in client: wait for a request, borrow a server, pump until the
//! transaction (or session) ends, give the server back clean or close it.

mod end;

use super::pump::{Outcome, Pump, Track};
use super::pump_prepared::Prepared;
use super::{send_error, ClientError};
use crate::app::App;
use crate::config::PoolMode;
use crate::pool::{Lease, Pool};
use crate::prepared::responses::Responses;
use crate::prepared::statements::ClientStatements;
use crate::protocol::backend::Severity;
use crate::protocol::frame::{self, Scanner};
use crate::protocol::frontend;
use crate::registry::Registration;
use crate::server::params::ParamSet;
use crate::tls::Stream;
use bytes::BytesMut;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

pub struct Session {
    pub app: Arc<App>,
    pub client: Stream,
    pub cbuf: BytesMut,
    pub pool: Pool,
    pub mode: PoolMode,
    /// The session parameters this client believes it has: its pool's
    /// welcome set, shared, until the client changes one (8 bytes, not
    /// 112, of every idle client's task).
    pub wanted: Arc<ParamSet>,
    /// The client's cancel key; dropping it unregisters the key.
    pub cancel: Registration,
    /// Named prepared statements, made when a pool that manages them first
    /// needs them (boxed: clients that never prepare carry one pointer).
    pub prepared: Option<Box<ClientPrepared>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.pool
            .stats()
            .clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A client's prepared-statement state between transactions.
#[derive(Default)]
pub struct ClientPrepared {
    names: ClientStatements,
    responses: Responses,
    to_server: BytesMut,
    to_client: BytesMut,
}

/// Wait futures made once per client, so the per-transaction path
/// allocates nothing.
struct Waits {
    /// Made only when an idle timeout is configured.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Waits {
    fn ensure_timer(&mut self) {
        if self.timer.is_none() {
            self.timer = Some(Box::pin(tokio::time::sleep(Duration::from_secs(3600))));
        }
    }
}

enum Next {
    Request,
    Leave,
}

/// The settings a request uses, copied out of the shared config once the
/// request is there: each read of the shared config costs a debt slot, and
/// the request cycle made three (now two, with the wait's own).
#[derive(Clone, Copy)]
struct Limits {
    max_packet: u32,
    client_idle_timeout: Duration,
    idle_transaction_timeout: Duration,
    query_timeout: Duration,
    transaction_timeout: Duration,
    max_prepared: u32,
    max_pipelined: usize,
}

impl Limits {
    fn of(cfg: &crate::config::Config) -> Limits {
        Limits {
            max_packet: cfg.max_packet_size,
            client_idle_timeout: cfg.client_idle_timeout,
            idle_transaction_timeout: cfg.idle_transaction_timeout,
            query_timeout: cfg.query_timeout,
            transaction_timeout: cfg.transaction_timeout,
            max_prepared: cfg.max_prepared_statements,
            max_pipelined: cfg.max_pipelined_requests as usize,
        }
    }
}

impl Session {
    /// The login's user and database, kept once, in the client registry.
    fn user(&self) -> &str {
        self.cancel.slot.info().map_or("", |i| i.user.as_str())
    }

    fn db(&self) -> &str {
        self.cancel.slot.info().map_or("", |i| i.db.as_str())
    }

    /// Kept there too, not here: 32 bytes of every idle client.
    fn peer(&self) -> String {
        self.cancel
            .slot
            .info()
            .map_or_else(String::new, |i| i.peer.to_string())
    }

    /// Runs the session to its end and logs how it ended. By reference: an
    /// async fn stores a by-value argument twice (as the captured argument
    /// and as its local), and this one is a third of an idle client.
    pub async fn run(&mut self) {
        let ended = self.run_loop().await;
        if !self.app.config.load().log_disconnections {
            return;
        }
        match ended {
            Ok(()) => {
                tracing::info!(peer = %self.peer(), db = %self.db(), user = %self.user(), "client disconnected")
            }
            Err(e) => {
                tracing::info!(peer = %self.peer(), db = %self.db(), user = %self.user(), error = %e, "client connection ended")
            }
        }
    }

    async fn run_loop(&mut self) -> Result<(), ClientError> {
        let mut waits = Waits { timer: None };
        let mut cscan = Scanner::new();
        loop {
            if let Next::Leave = self.wait_for_request(&mut waits).await? {
                return Ok(());
            }
            // Read once the request is there: a reload during a long wait
            // applies to the request that ended it.
            let limits = Limits::of(&self.app.config.load());
            if let Some(out) = self.idle_answer(limits) {
                // Boxed: rare next to transactions, and inlined its state
                // would be part of every idle client's future.
                Box::pin(send_answer(&mut self.client, out)).await?;
                continue;
            }
            // Boxed per transaction: a transaction's state (the lease, the
            // check-out, the pump) is most of a client's future, and an idle
            // client should not carry it. One allocation per transaction.
            if !Box::pin(self.transaction(&mut cscan, &mut waits, &limits)).await {
                return Ok(());
            }
        }
    }

    /// One transaction (or, in session mode, the whole session) on a
    /// borrowed server. True when the client stays for another.
    async fn transaction(
        &mut self,
        cscan: &mut Scanner,
        waits: &mut Waits,
        limits: &Limits,
    ) -> bool {
        let Some(checkout) = self.checkout().await else {
            self.cancel.slot.stop_waiting();
            self.say_goodbye().await;
            return false;
        };
        let mut lease = match checkout {
            Ok(l) => l,
            Err(e) => {
                self.cancel.slot.stop_waiting();
                tracing::warn!(db = %self.db(), user = %self.user(), error = %e, "no server connection for client");
                send_error(
                    &mut self.client,
                    Severity::Fatal,
                    e.sqlstate(),
                    &e.to_string(),
                )
                .await;
                return false;
            }
        };
        if let Err(e) = self.prepare(&mut lease).await {
            send_error(
                &mut self.client,
                Severity::Fatal,
                e.sqlstate(),
                &e.to_string(),
            )
            .await;
            lease.discard();
            return false;
        }
        let mut track = Track::default();
        let outcome = self
            .pump(&mut lease, cscan, &mut track, waits, limits)
            .await;
        self.cancel.slot.clear();
        self.finish(outcome, lease, &track).await
    }

    /// A server connection, or None when the client was killed while it
    /// waited. A free server is taken with nothing else touched: no clock
    /// read, no kill-switch waiter (a `select!` here cost 5% more
    /// instructions per transaction, most of it moving futures around).
    async fn checkout(&mut self) -> Option<Result<Lease, crate::pool::PoolError>> {
        let (slot, draining) = (&self.cancel.slot, &self.app.shutdown);
        let mut checkout = std::pin::pin!(self.pool.checkout_with(|t| slot.waiting_since(t)));
        let mut shutdown_seen = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = checkout.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            // A kill ends the wait; a shutdown lets it go on (the client's
            // request is answered, then it is told).
            if !shutdown_seen && slot.kill.poll_cancelled(cx).is_ready() {
                if !draining.is_cancelled() {
                    return Poll::Ready(None);
                }
                shutdown_seen = true;
            }
            Poll::Pending
        })
        .await
    }

    /// A prepare or a `DEALLOCATE` of a client's statement between
    /// transactions is answered without a server (see
    /// [`super::pump_prepared::answer_idle_parse`] and
    /// [`super::pump_prepared::answer_idle_deallocate`]): the answer to
    /// send, taken off `cbuf`. Not async, so the limits passed in are not
    /// stored in the future every idle client carries.
    fn idle_answer(&mut self, limits: Limits) -> Option<BytesMut> {
        let (managed, max_packet) = (limits.max_prepared > 0, limits.max_packet);
        if self.mode == PoolMode::Session || !managed {
            return None;
        }
        let answer = match self.cbuf.first() {
            Some(&crate::prepared::message::PARSE) => {
                let state = self.prepared.get_or_insert_with(Box::default);
                super::pump_prepared::answer_idle_parse(
                    &mut self.cbuf,
                    &mut state.names,
                    max_packet,
                )
            }
            Some(&crate::protocol::frontend::QUERY) => match self.prepared.as_deref_mut() {
                Some(state) if !state.names.is_empty() => {
                    super::pump_prepared::answer_idle_deallocate(
                        &mut self.cbuf,
                        &mut state.names,
                        max_packet,
                    )
                }
                _ => None,
            },
            _ => None,
        };
        answer
    }

    /// Waits, holding no server, until the client sends something.
    /// Reads its two settings itself: what it is passed is stored in its
    /// future, which every idle client carries.
    async fn wait_for_request(&mut self, waits: &mut Waits) -> Result<Next, ClientError> {
        let cfg = self.app.config.load();
        let (max, idle_timeout) = (cfg.max_packet_size, cfg.client_idle_timeout);
        drop(cfg);
        if !idle_timeout.is_zero() {
            waits.ensure_timer();
            if let Some(t) = waits.timer.as_mut() {
                t.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
            }
        }
        loop {
            let header = match frame::header(&self.cbuf, max) {
                Ok(h) => h,
                Err(e) => {
                    send_error(&mut self.client, Severity::Fatal, "08P01", &e.to_string()).await;
                    return Err(e.into());
                }
            };
            // A console KILL drops the client even when its next request
            // has already arrived (the socket can turn readable before this
            // task sees the switch); a shutdown answers that request first.
            if self.cancel.slot.kill.is_cancelled()
                && (header.is_none() || !self.app.shutdown.is_cancelled())
            {
                self.say_goodbye().await;
                return Ok(Next::Leave);
            }
            if let Some((tag, _)) = header {
                return Ok(if tag == frontend::TERMINATE {
                    Next::Leave
                } else {
                    Next::Request
                });
            }
            if self.cbuf.is_empty() && self.cbuf.capacity() > 0 {
                // Idle clients hold no buffer: with thousands of them this is
                // most of the proxy's memory. One is taken when bytes arrive.
                super::buffers::release(&mut self.cbuf);
            }
            let timer = waits.timer.as_mut().filter(|_| !idle_timeout.is_zero());
            match wake(&self.client, &self.cancel.slot.kill, timer).await? {
                Woke::Readable => {}
                Woke::Shutdown => continue,
                Woke::IdleTimeout => {
                    send_error(
                        &mut self.client,
                        Severity::Fatal,
                        "57P05",
                        "client_idle_timeout: closing idle connection",
                    )
                    .await;
                    return Ok(Next::Leave);
                }
            }
            super::buffers::reserve(&mut self.cbuf);
            // poll_read, not try_read: a short read clears tokio's readiness,
            // so the pump's first read of the client does not cost a recv
            // that can only say EAGAIN (one syscall of five per transaction).
            let client = &mut self.client;
            let cbuf = &mut self.cbuf;
            let read =
                std::future::poll_fn(|cx| match poll_read_buf(Pin::new(&mut *client), cx, cbuf) {
                    Poll::Ready(r) => Poll::Ready(Some(r)),
                    // Readiness was stale; back to waiting.
                    Poll::Pending => Poll::Ready(None),
                })
                .await;
            match read {
                Some(Ok(0)) => return Ok(Next::Leave),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Makes the server's session parameters match the client's and points
    /// cancel requests at this server.
    async fn prepare(&mut self, lease: &mut Lease) -> Result<(), crate::server::ServerError> {
        let conn = lease.conn();
        if let Some(sql) = conn.params.sync_sql(&self.wanted) {
            // Boxed: a parameter change is rare next to plain transactions.
            Box::pin(conn.run_own_query(&sql)).await?;
            conn.params.adopt(&self.wanted);
        }
        let since = lease.since();
        if let Some(link) = &lease.conn().link {
            self.cancel.slot.set(link.clone(), since);
        }
        Ok(())
    }

    async fn pump(
        &mut self,
        lease: &mut Lease,
        cscan: &mut Scanner,
        track: &mut Track,
        waits: &mut Waits,
        cfg: &Limits,
    ) -> Outcome {
        let timed = !cfg.idle_transaction_timeout.is_zero()
            || !cfg.query_timeout.is_zero()
            || !cfg.transaction_timeout.is_zero()
            || (self.mode == PoolMode::Session && !cfg.client_idle_timeout.is_zero());
        if timed {
            waits.ensure_timer();
        }
        let managed = self.mode != PoolMode::Session && cfg.max_prepared > 0;
        if managed && self.prepared.is_none() {
            self.prepared = Some(Box::default());
        }
        let counters = &self.pool.stats().prepared;
        let conn = lease.conn();
        conn.prepared.set_capacity(cfg.max_prepared as usize);
        conn.prepared.start_lease();
        let prepared = match self.prepared.as_deref_mut() {
            Some(p) if managed => {
                // A run that ended early (an error) leaves nothing behind:
                // the server connection it used was closed.
                p.responses.clear();
                p.to_server.clear();
                p.to_client.clear();
                Some(Prepared {
                    names: &mut p.names,
                    server: &mut conn.prepared,
                    responses: &mut p.responses,
                    counters,
                    to_server: &mut p.to_server,
                    to_client: &mut p.to_client,
                })
            }
            _ => None,
        };
        Pump {
            client: &mut self.client,
            cbuf: &mut self.cbuf,
            cscan,
            server: &mut conn.stream,
            sbuf: &mut conn.rbuf,
            server_params: &mut conn.params,
            client_params: &mut self.wanted,
            track,
            mode: self.mode,
            max_packet: cfg.max_packet,
            max_pipelined: cfg.max_pipelined,
            kill: &self.cancel.slot.kill,
            server_generation: conn.generation,
            draining: &self.app.shutdown,
            timer: waits.timer.as_mut().map(|t| t.as_mut()),
            idle_transaction_timeout: cfg.idle_transaction_timeout,
            client_idle_timeout: cfg.client_idle_timeout,
            query_timeout: cfg.query_timeout,
            transaction_timeout: cfg.transaction_timeout,
            prepared,
        }
        .run()
        .await
    }

    /// Settles the server connection after a pump run. True when the client
    /// stays connected for another transaction.
    async fn finish(&mut self, outcome: Outcome, lease: Lease, track: &Track) -> bool {
        // A released transaction ended with the ReadyForQuery just timed:
        // that reading serves as its end.
        let now = track.idle_since.unwrap_or_else(std::time::Instant::now);
        self.count(track, now.saturating_duration_since(lease.since()));
        if let Outcome::Released = outcome {
            lease.release_at(now);
            return true;
        }
        // Boxed: the ways a session ends are many and each happens once;
        // inlined, their state would be part of every client's future.
        Box::pin(self.end(outcome, lease, track)).await;
        false
    }

    fn count(&self, track: &Track, held: std::time::Duration) {
        self.pool.stats().count(&crate::pool::Finished {
            queries: track.queries,
            received: track.received,
            sent: track.sent,
            held_us: held.as_micros() as u64,
            query_us: track.query_us,
            query_buckets: &track.query_buckets,
        });
    }
}

async fn send_answer(client: &mut Stream, out: BytesMut) -> std::io::Result<()> {
    tokio::io::AsyncWriteExt::write_all(client, &out).await?;
    tokio::io::AsyncWriteExt::flush(client).await
}

/// What ended a wait for the client's next request.
enum Woke {
    Readable,
    Shutdown,
    IdleTimeout,
}

/// Waits for the client's socket, shutdown or the idle timer. A `poll_fn`
/// over `poll_read_ready`, not `select!` over `readable()`: the waker then
/// sits in tokio's per-socket slot instead of a waiter node inside this
/// future, and this future is part of every idle client.
fn wake<'a>(
    client: &'a Stream,
    kill: &'a crate::registry::kill::Kill,
    mut timer: Option<&'a mut Pin<Box<Sleep>>>,
) -> impl Future<Output = std::io::Result<Woke>> + 'a {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(r) = client.poll_read_ready(cx) {
            return Poll::Ready(r.map(|()| Woke::Readable));
        }
        if kill.poll_cancelled(cx).is_ready() {
            return Poll::Ready(Ok(Woke::Shutdown));
        }
        if let Some(t) = timer.as_mut() {
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Woke::IdleTimeout));
            }
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A transaction's future is allocated once per transaction. glibc
    /// serves requests up to 1,032 bytes from a per-thread cache and larger
    /// ones from its bins; at 1,464 bytes that cost about 600 instructions
    /// per transaction (callgrind). Measured with rustc 1.95: 896 bytes.
    #[test]
    fn transaction_future_fits_the_malloc_thread_cache() {
        let size = future_size(Session::transaction);
        println!("transaction future: {size} bytes");
        assert!(size <= 1032, "transaction future grew to {size} bytes");
    }
}
