//! Issue #13's cost claims, measured with a counting allocator (this test binary's own global allocator):
//! a tag filter is evaluated without allocating, and a delta-enabled socket's state on a channel is a few
//! integers (Sockudo keeps a 10-50 KB copy of the last message per socket), whatever the message size.

use bytes::Bytes;
use sockudo::delta::channel::{ChannelDeltas, EventInput};
use sockudo::delta::{Algorithm, DeltaSettings, SocketDelta};
use sockudo::tags::{FilterLimits, TagFilter, Tags};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

/// Counts the calling thread's allocations and live bytes (tests run on threads of their own).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(allocations: usize, bytes: isize) {
    // `try_with`: the thread's counters may already be gone while it shuts down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + allocations));
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, -(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(1, new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Tags::new(map).unwrap()
}

#[test]
fn evaluating_a_filter_allocates_nothing() {
    // Every comparator and every branch kind in one tree.
    let filter = TagFilter::parse(
        &serde_json::json!({"op": "or", "nodes": [
            {"op": "and", "nodes": [
                {"key": "type", "cmp": "eq", "val": "goal"},
                {"key": "team", "cmp": "neq", "val": "Other"},
                {"key": "team", "cmp": "in", "vals": ["Real Madrid", "Barcelona"]},
                {"key": "league", "cmp": "nin", "vals": ["U21"]},
                {"key": "xg", "cmp": "ex"},
                {"key": "var", "cmp": "nex"},
                {"key": "team", "cmp": "sw", "val": "Real"},
                {"key": "team", "cmp": "ew", "val": "Madrid"},
                {"key": "team", "cmp": "ct", "val": "al M"},
                {"key": "xg", "cmp": "gt", "val": "0.5"},
                {"key": "xg", "cmp": "gte", "val": 0.87},
                {"key": "minute", "cmp": "lt", "val": "90"},
                {"key": "minute", "cmp": "lte", "val": 24}
            ]},
            {"op": "not", "nodes": [{"key": "type", "cmp": "ex"}]}
        ]}),
        &FilterLimits::default(),
    )
    .unwrap();
    let goal = tags(&[
        ("type", "goal"),
        ("team", "Real Madrid"),
        ("league", "Liga"),
        ("xg", "0.87"),
        ("minute", "24"),
    ]);
    let shot = tags(&[("type", "shot"), ("team", "Real Madrid"), ("xg", "0.2")]);
    let untyped = tags(&[("team", "Real Madrid")]);

    let before = allocations();
    let mut passed = 0;
    for _ in 0..10_000 {
        passed += usize::from(filter.matches(&goal));
        passed += usize::from(filter.matches(&shot));
        passed += usize::from(filter.matches(&untyped));
    }
    let allocated = allocations() - before;
    // goal passes the `and` branch, untyped the `not` branch, shot neither.
    assert_eq!(passed, 20_000);
    assert_eq!(
        allocated, 0,
        "filter evaluation allocated {allocated} times"
    );
}

/// A ~1 KB ticker envelope in which a few fields change.
fn envelope(i: u32) -> Bytes {
    let book: Vec<String> = (0..45)
        .map(|l| {
            format!(
                "[\\\"{}.00\\\",\\\"{}\\\"]",
                59_000 + l * 13,
                1 + l * 37 % 500
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"event":"tick","channel":"ticker","data":"{{\"bid\":\"{}.5\",\"ask\":\"{}.5\",\"volume\":{},\"book\":[{}]}}"}}"#,
        60_000 + i,
        60_001 + i,
        1_000_000 + i * 7,
        book.join(",")
    ))
}

/// Heap bytes a channel's delta state holds after `events` events to `sockets` delta-enabled subscribers.
fn state_bytes(sockets: u64, events: u32, envelopes: &[Bytes]) -> isize {
    let settings = DeltaSettings::default();
    let start = live_bytes();
    let mut channel = ChannelDeltas::default();
    for conn in 0..sockets {
        channel.add_socket(conn, Algorithm::Fossil);
    }
    let mut deltas = 0;
    for i in 0..events {
        let env = &envelopes[i as usize];
        let mut round = channel.begin(
            EventInput {
                envelope: env,
                event: "tick",
                channel: "ticker",
                key: None,
            },
            0,
            &settings,
        );
        for conn in 0..sockets {
            let socket = channel.socket_mut(conn).unwrap();
            let frame = round.frame_for(socket);
            deltas += usize::from(frame.len() < env.len());
        }
        channel.finish(round, 0, &settings);
    }
    // The stream really was deltas (a full frame is longer than its envelope).
    assert!(deltas as u64 >= sockets * u64::from(events) / 2);
    let held = live_bytes() - start;
    drop(channel);
    held
}

#[test]
fn a_delta_socket_costs_a_few_integers_not_a_copy_of_the_message() {
    const EVENTS: u32 = 25;
    let envelopes: Vec<Bytes> = (0..EVENTS).map(envelope).collect();
    assert!(envelopes[0].len() > 1000);
    // One map entry per socket: connection id and this.
    assert!(std::mem::size_of::<SocketDelta>() <= 24);
    let one = state_bytes(1, EVENTS, &envelopes);
    for sockets in [1_000u64, 1_500, 4_000] {
        let many = state_bytes(sockets + 1, EVENTS, &envelopes);
        let per_socket = (many - one) / sockets as isize;
        // Reported by `--nocapture`; docs/performance.md quotes it.
        eprintln!("{sockets} sockets: {per_socket} heap bytes per delta socket on the channel");
        assert!(
            per_socket < 200,
            "{per_socket} bytes per delta socket with {sockets} sockets"
        );
    }
}
