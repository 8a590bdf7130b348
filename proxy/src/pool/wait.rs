//! Clients waiting for a pool slot: the list SHOW POOLS `maxwait` reads,
//! and the `query_wait_timeout` of each wait.
//!
//! The timeout is not a tokio timer per wait. At 50 clients on a pool of
//! 20 most transactions wait, and arming, polling and dropping a timer
//! entry cost about 300 instructions per transaction (callgrind), on a
//! timer wheel both worker threads lock. Each waiter is listed with its
//! deadline and waker instead ([`BoundedWait`]), and a janitor ([`Waiters::wake_overdue`],
//! run every [`JANITOR_PERIOD`] by the app) wakes those past it, which then
//! give up. A wait so ends at most one period late.

use super::PoolError;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the janitor looks for waits past their deadline.
pub const JANITOR_PERIOD: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Waiters {
    /// Clients waiting now (SHOW POOLS `cl_waiting`).
    pub count: AtomicU32,
    /// Microseconds waited, by waits that ended.
    pub total_us: AtomicU64,
    /// The same waits by length (/metrics `pgwolf_wait_duration_seconds`).
    pub hist: super::histogram::Histogram,
    list: Mutex<Vec<Waiter>>,
    next_id: AtomicU64,
}

struct Waiter {
    id: u64,
    since: Instant,
    deadline: Option<Instant>,
    /// None: the wait has a timer of its own (PAUSE).
    waker: Option<Waker>,
}

impl Waiters {
    /// Counts a client as waiting from `since` until the guard drops.
    pub(super) fn start(
        &self,
        since: Instant,
        deadline: Option<Instant>,
        waker: Option<Waker>,
    ) -> WaitGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.list.lock().unwrap().push(Waiter {
            id,
            since,
            deadline,
            waker,
        });
        WaitGuard {
            waiters: self,
            id,
            ended: None,
        }
    }

    /// The longest current wait.
    pub fn longest(&self) -> Duration {
        let list = self.list.lock().unwrap();
        list.iter()
            .map(|w| w.since.elapsed())
            .max()
            .unwrap_or_default()
    }

    /// Wakes every waiter whose deadline is past `now`; each then sees it
    /// and gives up.
    pub fn wake_overdue(&self, now: Instant) {
        let list = self.list.lock().unwrap();
        for w in list.iter() {
            if let (Some(d), Some(waker)) = (w.deadline, &w.waker) {
                if d <= now {
                    waker.wake_by_ref();
                }
            }
        }
    }
}

/// A listed wait; dropping it unlists it and adds its duration to the
/// total.
pub(super) struct WaitGuard<'a> {
    waiters: &'a Waiters,
    id: u64,
    /// When the wait ended, if the caller had read the clock already.
    ended: Option<Instant>,
}

impl WaitGuard<'_> {
    /// The wait ended at `now`.
    pub(super) fn end(mut self, now: Instant) {
        self.ended = Some(now);
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let w = self.waiters;
        w.count.fetch_sub(1, Ordering::Relaxed);
        let mut list = w.list.lock().unwrap();
        if let Some(i) = list.iter().position(|x| x.id == self.id) {
            let since = list.swap_remove(i).since;
            drop(list);
            let ended = self.ended.unwrap_or_else(Instant::now);
            let us = ended.saturating_duration_since(since).as_micros() as u64;
            w.total_us.fetch_add(us, Ordering::Relaxed);
            w.hist.observe(us);
        }
    }
}

pin_project_lite::pin_project! {
    /// Waits for `acquire`, listed in the waiters from `since`, for at most
    /// `timeout` (zero: no limit). `acquire` is polled first and, when it
    /// is ready then, nothing is listed. The result comes with the clock
    /// reading taken at its end. A struct, not an async fn: that stored
    /// `acquire` twice (as its argument and as the pinned local), 568
    /// bytes of every transaction's future.
    pub(super) struct BoundedWait<'a, F> {
        #[pin]
        acquire: F,
        waiters: &'a Waiters,
        since: Instant,
        timeout: Duration,
        guard: Option<WaitGuard<'a>>,
    }
}

impl<'a, F> BoundedWait<'a, F> {
    pub(super) fn new(waiters: &'a Waiters, since: Instant, timeout: Duration, acquire: F) -> Self {
        BoundedWait {
            acquire,
            waiters,
            since,
            timeout,
            guard: None,
        }
    }
}

impl<T, F: Future<Output = Result<T, PoolError>>> Future for BoundedWait<'_, F> {
    type Output = Result<(T, Instant), PoolError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.acquire.poll(cx) {
            let got = r?;
            let now = Instant::now();
            if let Some(g) = this.guard.take() {
                g.end(now);
            }
            return Poll::Ready(Ok((got, now)));
        }
        let deadline = (!this.timeout.is_zero()).then(|| *this.since + *this.timeout);
        match (&this.guard, deadline) {
            // Polled by one task for the whole wait, so its first waker
            // stays the one to wake.
            (None, _) => {
                let waker = Some(cx.waker().clone());
                *this.guard = Some(this.waiters.start(*this.since, deadline, waker));
            }
            // Woken without a slot: by the janitor, or by whatever else
            // the caller waits on.
            (Some(_), Some(d)) if Instant::now() >= d => {
                return Poll::Ready(Err(PoolError::WaitTimeout(*this.timeout)));
            }
            _ => {}
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn janitor(waiters: Arc<Waiters>) {
        loop {
            tokio::time::sleep(JANITOR_PERIOD).await;
            waiters.wake_overdue(Instant::now());
        }
    }

    #[tokio::test]
    async fn a_wait_past_its_deadline_ends_within_a_janitor_period() {
        let waiters = Arc::new(Waiters::default());
        let janitor = tokio::spawn(janitor(waiters.clone()));
        let started = Instant::now();
        let never = std::future::pending::<Result<(), PoolError>>();
        let r = BoundedWait::new(&waiters, started, Duration::from_millis(300), never).await;
        let took = started.elapsed();
        assert!(matches!(r, Err(PoolError::WaitTimeout(_))), "{r:?}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(
            took < Duration::from_millis(300) + 3 * JANITOR_PERIOD,
            "{took:?}"
        );
        assert_eq!(waiters.count.load(Ordering::Relaxed), 0);
        assert!(waiters.total_us.load(Ordering::Relaxed) >= 300_000);
        assert_eq!(waiters.longest(), Duration::ZERO);
        janitor.abort();
    }

    #[tokio::test]
    async fn a_wait_that_gets_its_slot_is_unlisted_and_counted() {
        let waiters = Waiters::default();
        let sem = Arc::new(tokio::sync::Semaphore::new(0));
        let acquire = async {
            sem.clone()
                .acquire_owned()
                .await
                .map_err(|_| PoolError::Closed)
        };
        let wait = BoundedWait::new(&waiters, Instant::now(), Duration::from_secs(60), acquire);
        let mut wait = std::pin::pin!(wait);
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        assert_eq!(waiters.count.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.longest() >= Duration::from_millis(20));
        sem.add_permits(1);
        let (_permit, _) = wait.await.expect("the slot");
        assert_eq!(waiters.count.load(Ordering::Relaxed), 0);
        assert!(waiters.total_us.load(Ordering::Relaxed) >= 20_000);
    }

    #[tokio::test]
    async fn a_free_slot_lists_nothing() {
        let waiters = Waiters::default();
        let r = BoundedWait::new(&waiters, Instant::now(), Duration::ZERO, async { Ok(7) }).await;
        assert_eq!(r.unwrap().0, 7);
        assert_eq!(waiters.total_us.load(Ordering::Relaxed), 0);
        assert_eq!(waiters.next_id.load(Ordering::Relaxed), 0);
    }
}
