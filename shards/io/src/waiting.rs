//! Deliveries waiting (for a connection slot or for their next retry), oldest first, so that beyond
//! `max_pending_deliveries` the oldest can be told to give up: memory stays bounded when a receiver is down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The waiting deliveries and how many may wait.
#[derive(Debug)]
pub(crate) struct Waiting {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Keyed by registration order; the sender tells a waiter it was evicted.
    entries: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Waiting {
    /// At most `cap` (at least 1) waiting deliveries.
    pub(crate) fn new(cap: usize) -> Arc<Waiting> {
        Arc::new(Waiting {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Registers a waiter; evicts the oldest ones beyond the cap. Dropping the ticket unregisters it.
    pub(crate) fn register(self: &Arc<Self>) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = inner.next_id;
        inner.next_id += 1;
        inner.entries.insert(id, tx);
        while inner.entries.len() > self.cap {
            if let Some((_, evict)) = inner.entries.pop_first() {
                let _ = evict.send(());
            }
        }
        Ticket {
            id,
            evicted: rx,
            owner: Arc::clone(self),
        }
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.remove(&id);
    }
}

/// One registered waiter.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    evicted: oneshot::Receiver<()>,
    owner: Arc<Waiting>,
}

impl Ticket {
    /// Resolves when this waiter was evicted (never otherwise while the ticket lives).
    pub(crate) async fn evicted(&mut self) {
        // Err means the sender is gone without a word: only when the registry itself is torn down.
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner.unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn is_evicted(t: &mut Ticket) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(t.evicted()).poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn oldest_waiter_is_evicted_beyond_the_cap() {
        let w = Waiting::new(2);
        let mut a = w.register();
        let mut b = w.register();
        assert!(!is_evicted(&mut a) && !is_evicted(&mut b));
        let mut c = w.register();
        assert!(is_evicted(&mut a));
        assert!(!is_evicted(&mut b) && !is_evicted(&mut c));
        drop(b);
        let mut d = w.register();
        assert!(
            !is_evicted(&mut c) && !is_evicted(&mut d),
            "a freed place is reused"
        );
    }
}
