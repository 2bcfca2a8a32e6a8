//! The shard's flusher: one task that writes out every connection with queued frames.
//!
//! Queuing a frame for a connection whose queue was idle puts the connection on this shard's pending list (a
//! `Vec` push, no task wake-up per delivery) and wakes the flusher once. The flusher runs after the tasks that
//! are already runnable, so the frames of every event published in one executor pass leave in one `sendmsg` per
//! connection. A connection whose socket is full gets a writer task of its own ([`super::write_loop`]) until it
//! has caught up; idle connections have no task, timer or buffer for writing.

use super::Connection;
use futures_lite::future::poll_fn;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct Pending {
    conns: RefCell<Vec<Rc<Connection>>>,
    waker: Cell<Option<Waker>>,
    started: Cell<bool>,
}

thread_local! {
    // One shard per thread: this is the shard's list.
    static PENDING: Pending = Pending::default();
}

/// Puts `conn` on the list of connections to write out.
pub(super) fn schedule(conn: Rc<Connection>) {
    PENDING.with(|p| {
        p.conns.borrow_mut().push(conn);
        if !p.started.replace(true) {
            glommio::spawn_local(run()).detach();
        } else if let Some(w) = p.waker.take() {
            w.wake();
        }
    });
}

async fn run() {
    let mut batch: Vec<Rc<Connection>> = Vec::new();
    loop {
        poll_fn(|cx| {
            PENDING.with(|p| {
                let mut conns = p.conns.borrow_mut();
                if conns.is_empty() {
                    p.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    std::mem::swap(&mut *conns, &mut batch);
                    Poll::Ready(())
                }
            })
        })
        .await;
        let mut i = 0;
        while i < batch.len() {
            batch[i].flush();
            i += 1;
            if i % 64 == 0 {
                glommio::yield_if_needed().await;
            }
        }
        batch.clear();
        if batch.capacity() > 4096 {
            batch.shrink_to(0);
        }
    }
}
