//! Carries requests from the crossbeam queue (which worker shards fill without blocking) into the tokio
//! runtime. crossbeam has no async receive, so a small thread blocks in `recv` and forwards; no polling.

use std::thread::JoinHandle;

use crossbeam_channel::{select, Receiver};
use tokio::sync::mpsc;

use crate::IoRequest;

/// Spawns the forwarding thread. It ends when `stop` is closed (after forwarding what is queued then, at
/// most `drain_max`), when every sender is gone, or when the runtime side is gone.
pub(crate) fn spawn(
    queue: Receiver<IoRequest>,
    stop: Receiver<()>,
    forward: mpsc::Sender<IoRequest>,
    drain_max: usize,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("io-shard-rx".into())
        .spawn(move || loop {
            select! {
                recv(queue) -> request => match request {
                    Ok(request) => {
                        if forward.blocking_send(request).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                recv(stop) -> _ => {
                    for request in queue.try_iter().take(drain_max) {
                        if forward.blocking_send(request).is_err() {
                            return;
                        }
                    }
                    return;
                }
            }
        })
}
