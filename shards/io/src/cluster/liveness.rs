//! Which nodes are alive, from what arrives on the bus: any message from a node counts as a sign of life, a
//! node silent for longer than the timeout is dead, and a jump in a node's sequence numbers means messages
//! from it were lost (the receiver asks for a fresh state).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What one message told us about its sender.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// First message from this node (or first since it was declared dead).
    pub new_node: bool,
    /// Messages from this node were lost before this one (its sequence jumped).
    pub gap: bool,
}

#[derive(Debug)]
struct Peer {
    last_seen: Instant,
    last_seq: u64,
}

/// The live peers of this node.
#[derive(Debug)]
pub struct Liveness {
    peers: HashMap<u64, Peer>,
    dead_after: Duration,
}

impl Liveness {
    /// Nodes silent for longer than `dead_after` are dead.
    pub fn new(dead_after: Duration) -> Liveness {
        Liveness {
            peers: HashMap::new(),
            dead_after,
        }
    }

    /// Records message `seq` from `node`.
    pub fn on_message(&mut self, node: u64, seq: u64, now: Instant) -> Seen {
        match self.peers.get_mut(&node) {
            Some(peer) => {
                let gap = seq > peer.last_seq.saturating_add(1);
                peer.last_seen = now;
                peer.last_seq = peer.last_seq.max(seq);
                Seen {
                    new_node: false,
                    gap,
                }
            }
            None => {
                self.peers.insert(
                    node,
                    Peer {
                        last_seen: now,
                        last_seq: seq,
                    },
                );
                Seen {
                    new_node: true,
                    gap: false,
                }
            }
        }
    }

    /// Forgets `node` (it said goodbye); true when it was known.
    pub fn remove(&mut self, node: u64) -> bool {
        self.peers.remove(&node).is_some()
    }

    /// Removes and returns the nodes silent for longer than the timeout.
    pub fn sweep(&mut self, now: Instant) -> Vec<u64> {
        let dead_after = self.dead_after;
        let dead: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > dead_after)
            .map(|(&id, _)| id)
            .collect();
        for id in &dead {
            self.peers.remove(id);
        }
        dead
    }

    /// Live peers (this node not included).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is alive.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_is_a_new_node_then_sequences_are_checked() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(10));
        assert_eq!(
            l.on_message(7, 1, t0),
            Seen {
                new_node: true,
                gap: false
            }
        );
        assert_eq!(l.on_message(7, 2, t0), Seen::default());
        assert_eq!(
            l.on_message(7, 5, t0),
            Seen {
                new_node: false,
                gap: true
            }
        );
        assert_eq!(l.on_message(7, 6, t0), Seen::default());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn silent_nodes_die_and_come_back_as_new() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(10));
        l.on_message(1, 1, t0);
        l.on_message(2, 1, t0);
        l.on_message(2, 2, t0 + Duration::from_secs(8));
        assert_eq!(l.sweep(t0 + Duration::from_secs(11)), vec![1]);
        assert!(l.on_message(1, 9, t0 + Duration::from_secs(12)).new_node);
        assert!(l.remove(2));
        assert!(!l.remove(2));
    }
}
