//! [`OnWake`]: a future that is polled again only after it asked to be.
//!
//! A connection task waits on several things at once (`select!`): its socket, the store's
//! reply, hub events, and the server's shutdown. Every time the task is woken, `select!` polls
//! every branch that is still pending, and polling a shutdown wait (a `watch` receiver shared
//! by every connection) takes the channel's waiter lock each time: two such waits per
//! connection cost about 0.9k instructions per telemetry message at one publish in flight,
//! and the lock is one cache line all connections' tasks take in turn (docs/benchmarks.md,
//! "Issue 11, fourth pass"). Wrapped in [`OnWake`], such a wait is polled once to register,
//! and from then on only after it woke its task; every other poll is one atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps a rarely ready future so that polling it while it has not woken is cheap.
pub struct OnWake<F> {
    inner: F,
    signal: Arc<Signal>,
    /// `signal` as a waker, handed to `inner`.
    own: Waker,
    /// The task's waker `signal` wakes (a copy, to notice a change without the lock).
    outer: Option<Waker>,
    /// Whether `inner` has been polled (and so has registered `own`).
    registered: bool,
}

/// What `inner` wakes: a flag, and the task waiting on the [`OnWake`].
struct Signal {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The flag first: a poll that replaces the task's waker meanwhile sees it set.
        self.woken.store(true, Ordering::Release);
        let outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = outer.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl<F: Future + Unpin> OnWake<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            outer: Mutex::new(None),
        });
        OnWake {
            inner,
            own: Waker::from(signal.clone()),
            signal,
            outer: None,
            registered: false,
        }
    }
}

impl<F: Future + Unpin> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // A task's waker stays the same for its life: the lock is taken once.
        if !this.outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            *this
                .signal
                .outer
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
            this.outer = Some(w);
        }
        if this.registered && !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.registered = true;
        this.signal.woken.store(false, Ordering::Release);
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, and wakes whoever it registered when
    /// told to.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_future_is_polled_once_then_only_after_it_woke_and_wakes_the_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let registered = Arc::new(Mutex::new(None::<Waker>));
        let mut f = OnWake::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: registered.clone(),
        });
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..10 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "registered once, not polled again"
        );
        // A spurious wake: polled once more, pending again.
        registered.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        // Ready and woken: the next poll completes.
        ready.store(true, Ordering::SeqCst);
        registered.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 2);
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let polls = Arc::new(AtomicUsize::new(0));
        let registered = Arc::new(Mutex::new(None::<Waker>));
        let mut f = OnWake::new(Probe {
            polls,
            ready: Arc::new(AtomicBool::new(false)),
            waker: registered.clone(),
        });
        let (a, b) = (
            Arc::new(CountingWaker(AtomicUsize::new(0))),
            Arc::new(CountingWaker(AtomicUsize::new(0))),
        );
        let wa = Waker::from(a.clone());
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&wa))
                .is_pending()
        );
        let wb = Waker::from(b.clone());
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&wb))
                .is_pending()
        );
        registered.lock().unwrap().take().unwrap().wake();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (0, 1)
        );
    }
}
