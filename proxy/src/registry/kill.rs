//! A client's kill switch: fired by KILL / KILL_CLIENT on the admin
//! console and by shutdown, polled by the client's own task several times
//! per transaction. It also carries the pool's word that server
//! connections older than a generation are retired (their member lost its
//! role): the client holding one ends its transaction at once instead of
//! waiting on a member that may never answer. A `CancellationToken` child of the shutdown token did
//! this for 580 more instructions per transaction (callgrind, `-S` at 50
//! clients: each poll of its waiter re-registers a `Notified` under the
//! token's lock), and every client carried a token node and a boxed
//! waiter. One waker slot is enough: only the client's own task waits.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// The state's value once fired.
const KILLED: u64 = u64::MAX;

#[derive(Default)]
pub struct Kill {
    /// [`KILLED`], or the pool generation below which the server
    /// connection the client holds is retired (0: none). One word, so the
    /// pump's check is one load.
    state: AtomicU64,
    waker: AtomicWaker,
}

/// Why the switch is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// KILL, KILL_CLIENT or shutdown: the client ends.
    Killed,
    /// The server connection the client holds was retired.
    Retired,
}

impl Kill {
    /// Retires the client's server connection if it was made for a pool
    /// generation below `generation`, and wakes the client's task; one made
    /// later is untouched, so a late or repeated call harms no one.
    pub fn retire_below(&self, generation: u64) {
        self.state
            .fetch_max(generation.min(KILLED - 1), Ordering::AcqRel);
        self.waker.wake();
    }

    fn check(&self, generation: u64) -> Option<Fired> {
        match self.state.load(Ordering::Acquire) {
            KILLED => Some(Fired::Killed),
            below if generation < below => Some(Fired::Retired),
            _ => None,
        }
    }

    /// Ready once fired, or once the server connection of `generation`
    /// that the client holds was retired; otherwise `cx`'s waker is woken
    /// when either happens.
    pub fn poll_fired(&self, cx: &mut Context<'_>, generation: u64) -> Poll<Fired> {
        if let Some(f) = self.check(generation) {
            return Poll::Ready(f);
        }
        self.waker.register(cx.waker());
        // A signal between the check and the registration woke no one.
        self.check(generation).map_or(Poll::Pending, Poll::Ready)
    }

    /// Fires the switch and wakes the client's task; idempotent.
    pub fn cancel(&self) {
        self.state.store(KILLED, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == KILLED
    }

    /// Ready once fired; otherwise `cx`'s waker is woken when it is.
    pub fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A cancel between the check and the registration woke no one.
        if self.is_cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub async fn cancelled(&self) {
        std::future::poll_fn(|cx| self.poll_cancelled(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_task_wakes_when_fired_from_another() {
        let kill = Arc::new(Kill::default());
        let waiter = tokio::spawn({
            let kill = kill.clone();
            async move { kill.cancelled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        kill.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .unwrap();
        assert!(kill.is_cancelled());
        // Fired stays fired.
        kill.cancelled().await;
    }

    #[tokio::test]
    async fn retirement_ends_only_connections_older_than_it() {
        let kill = Arc::new(Kill::default());
        let poll = |generation| {
            let kill = kill.clone();
            futures_util::FutureExt::now_or_never(std::future::poll_fn(move |cx| {
                kill.poll_fired(cx, generation)
            }))
        };
        assert_eq!(poll(0), None);
        kill.retire_below(3);
        assert_eq!(poll(2), Some(Fired::Retired));
        assert_eq!(poll(3), None, "a connection of the new generation");
        kill.retire_below(1);
        assert_eq!(poll(2), Some(Fired::Retired), "never lowered");
        assert!(!kill.is_cancelled(), "the client itself is not killed");
        let waiter = tokio::spawn({
            let kill = kill.clone();
            async move { std::future::poll_fn(|cx| kill.poll_fired(cx, 5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        kill.retire_below(6);
        let fired = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(fired, Fired::Retired);
        kill.cancel();
        assert_eq!(poll(9), Some(Fired::Killed));
    }
}
