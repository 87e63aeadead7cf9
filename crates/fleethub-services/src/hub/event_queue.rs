//! The bounded queue that carries a live connection's hub events (one sender in the presence
//! map, one receiver in the connection).
//!
//! Not a `tokio::sync::mpsc` channel: that allocates its first block of 32 event slots and a
//! channel state of several cache lines when it is created, about 1.4 KB for every live
//! connection, most of which never receives an event. This queue allocates room for events
//! only while some are queued (docs/benchmarks.md measures the memory per idle connection),
//! and a waiting receiver leaves only its waker.

use super::HubEvent;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// A connection's event queue holding at most `capacity` events.
pub(crate) fn event_queue(capacity: usize) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            events: VecDeque::new(),
            capacity,
            sender_gone: false,
            receiver_gone: false,
            waker: None,
        }),
    });
    (
        EventSender {
            shared: shared.clone(),
        },
        EventReceiver { shared },
    )
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    events: VecDeque<HubEvent>,
    capacity: usize,
    sender_gone: bool,
    receiver_gone: bool,
    /// The receiver's task while it waits in [`EventReceiver::recv`] (a stale one is
    /// harmless: waking it costs a poll that finds nothing). Cheaper than a `Notify`, whose
    /// waiter list a connection's loop would join and leave for every packet.
    waker: Option<Waker>,
}

impl State {
    fn wake_receiver(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("hub event queue")
    }
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection's event queue is full")]
    Full,
    #[error("the connection is gone")]
    Closed,
}

/// Why [`EventReceiver::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("no event is queued")]
    Empty,
    #[error("no event is queued and the hub has forgotten the connection")]
    Closed,
}

/// The hub's end of a connection's event queue.
pub(crate) struct EventSender {
    shared: Arc<Shared>,
}

impl EventSender {
    /// Queues `ev` unless the queue is full or the connection is gone; never waits.
    pub(crate) fn try_send(&self, ev: HubEvent) -> Result<(), SendError> {
        let mut state = self.shared.state();
        if state.receiver_gone {
            return Err(SendError::Closed);
        }
        if state.events.len() >= state.capacity {
            return Err(SendError::Full);
        }
        state.events.push_back(ev);
        state.wake_receiver();
        Ok(())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.sender_gone = true;
        state.wake_receiver();
    }
}

/// A connection's end of its event queue.
pub struct EventReceiver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver").finish_non_exhaustive()
    }
}

impl EventReceiver {
    /// The next event; `None` once the hub has forgotten the connection and every queued
    /// event was received. Cancel safe: an event is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<HubEvent> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.state();
            match take(&mut state) {
                Ok(ev) => Poll::Ready(Some(ev)),
                Err(TryRecvError::Closed) => Poll::Ready(None),
                Err(TryRecvError::Empty) => {
                    match &mut state.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next event if one is queued; never waits.
    pub fn try_recv(&mut self) -> Result<HubEvent, TryRecvError> {
        take(&mut self.shared.state())
    }
}

/// The next queued event (called with the queue locked).
fn take(state: &mut State) -> Result<HubEvent, TryRecvError> {
    match state.events.pop_front() {
        Some(ev) => {
            if state.events.is_empty() && state.events.capacity() > IDLE_CAPACITY {
                // A burst is over: an idle connection keeps no room for the next one.
                state.events = VecDeque::new();
            }
            Ok(ev)
        }
        None if state.sender_gone => Err(TryRecvError::Closed),
        None => Err(TryRecvError::Empty),
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.receiver_gone = true;
        state.events = VecDeque::new();
        state.waker = None;
    }
}

/// Room for events an empty queue may keep.
const IDLE_CAPACITY: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn events_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = event_queue(2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.try_send(HubEvent::C2dAvailable).unwrap();
        tx.try_send(HubEvent::Revoked("a".into())).unwrap();
        assert_eq!(tx.try_send(HubEvent::C2dAvailable), Err(SendError::Full));
        assert_eq!(rx.recv().await, Some(HubEvent::C2dAvailable));
        assert_eq!(rx.recv().await, Some(HubEvent::Revoked("a".into())));
        tx.try_send(HubEvent::C2dAvailable).unwrap();
        assert_eq!(rx.try_recv(), Ok(HubEvent::C2dAvailable));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_event_and_by_the_senders_end() {
        let (tx, mut rx) = event_queue(8);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(HubEvent::C2dAvailable).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, (Some(HubEvent::C2dAvailable), None));
    }

    #[tokio::test]
    async fn queued_events_outlive_the_sender_and_a_gone_receiver_refuses_more() {
        let (tx, mut rx) = event_queue(8);
        tx.try_send(HubEvent::C2dAvailable).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(HubEvent::C2dAvailable));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));

        let (tx, rx) = event_queue(8);
        drop(rx);
        assert_eq!(tx.try_send(HubEvent::C2dAvailable), Err(SendError::Closed));
    }

    #[test]
    fn an_emptied_queue_gives_its_room_back() {
        let (tx, mut rx) = event_queue(64);
        for _ in 0..64 {
            tx.try_send(HubEvent::C2dAvailable).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.shared.state().events.capacity() <= IDLE_CAPACITY);
    }
}
