//! Scenarios of the coordination state, without sockets: every effect is recorded, and
//! the invariants are checked after each step.

use super::*;

#[derive(Default)]
struct Recorder {
    replies: Vec<(ClientId, u64, CoordReply)>,
    /// Keys held on behalf of the coordination state, with multiplicity.
    held: FxHashMap<String, i64>,
    given: Vec<(ClientId, String)>,
}

impl CoordEffects for Recorder {
    fn reply(&mut self, client: ClientId, request: u64, reply: CoordReply) {
        self.replies.push((client, request, reply));
    }
    fn hold(&mut self, keys: &[String]) {
        for k in keys {
            *self.held.entry(k.clone()).or_default() += 1;
        }
    }
    fn unhold(&mut self, keys: &[String]) {
        for k in keys {
            let n = self.held.entry(k.clone()).or_default();
            *n -= 1;
            assert!(*n >= 0, "unhold of {k} never held");
            if *n == 0 {
                self.held.remove(k);
            }
        }
    }
    fn give(&mut self, client: ClientId, keys: &[String]) {
        self.given.extend(keys.iter().map(|k| (client, k.clone())));
    }
}

const A: ClientId = ClientId(1);
const B: ClientId = ClientId(2);

struct Scenario {
    coord: Coordination,
    fx: Recorder,
    next: u64,
}

impl Scenario {
    fn new() -> Self {
        Scenario {
            coord: Coordination::default(),
            fx: Recorder::default(),
            next: 0,
        }
    }

    /// Send `op` from `client`; the request id and the reply, if one came at once.
    fn ask(&mut self, client: ClientId, op: CoordRequest) -> (u64, Option<CoordReply>) {
        self.next += 1;
        let request = self.next;
        self.coord.on_request(client, request, op, &mut self.fx);
        self.coord.sanity_check();
        (request, self.reply_to(client, request))
    }

    /// The reply to `request` of `client`, if it was sent (taken out of the record).
    fn reply_to(&mut self, client: ClientId, request: u64) -> Option<CoordReply> {
        let pos = self
            .fx
            .replies
            .iter()
            .position(|(c, r, _)| *c == client && *r == request)?;
        Some(self.fx.replies.remove(pos).2)
    }
}

fn value(data: &[u8], keys: &[&str]) -> HeldValue {
    HeldValue {
        data: data.to_vec(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn acquire(names: &[&str], max: u32, lease: &str, wait: bool) -> CoordRequest {
    CoordRequest::Acquire {
        names: names.iter().map(|n| n.to_string()).collect(),
        max_leases: max,
        lease: lease.into(),
        wait,
    }
}

fn release(names: &[&str], lease: &str) -> CoordRequest {
    CoordRequest::Release {
        names: names.iter().map(|n| n.to_string()).collect(),
        lease: lease.into(),
    }
}

#[test]
fn variable_get_waits_for_set_and_holds_keys_of_the_value() {
    let mut s = Scenario::new();
    let get = |wait| CoordRequest::VariableGet {
        name: "x".into(),
        wait,
    };
    assert_eq!(s.ask(A, get(false)).1, Some(CoordReply::NotFound));
    let (waiting, reply) = s.ask(B, get(true));
    assert_eq!(reply, None, "a get before any set waits");
    let set = |v| CoordRequest::VariableSet {
        name: "x".into(),
        value: v,
    };
    assert_eq!(s.ask(A, set(value(b"1", &["k1"]))).1, Some(CoordReply::Ok));
    assert_eq!(
        s.reply_to(B, waiting),
        Some(CoordReply::Value(value(b"1", &["k1"])))
    );
    assert_eq!(
        s.fx.given,
        vec![(B, "k1".to_string())],
        "the getter holds k1 now"
    );
    assert_eq!(s.fx.held.get("k1"), Some(&1));
    // Replacing the value releases the old one's keys.
    s.ask(A, set(value(b"2", &["k2"])));
    assert_eq!(s.fx.held.get("k1"), None);
    assert_eq!(s.fx.held.get("k2"), Some(&1));
    s.ask(A, CoordRequest::VariableDelete { name: "x".into() });
    assert!(s.fx.held.is_empty(), "{:?}", s.fx.held);
    assert_eq!(s.ask(A, get(false)).1, Some(CoordReply::NotFound));
}

#[test]
fn queue_is_fifo_bounded_and_hands_keys_to_the_taker() {
    let mut s = Scenario::new();
    let put = |d: &[u8], keys: &[&str], wait| CoordRequest::QueuePut {
        name: "q".into(),
        value: value(d, keys),
        maxsize: 2,
        wait,
    };
    let get = |count, wait| CoordRequest::QueueGet {
        name: "q".into(),
        count,
        wait,
    };
    let (g, reply) = s.ask(B, get(1, true));
    assert_eq!(reply, None, "get on an empty queue waits");
    s.ask(A, put(b"a", &["ka"], true));
    assert_eq!(
        s.reply_to(B, g),
        Some(CoordReply::Values(vec![value(b"a", &["ka"])]))
    );
    assert!(
        s.fx.held.is_empty(),
        "the taker holds ka now, the queue does not"
    );
    assert!(s.fx.given.contains(&(B, "ka".to_string())));
    s.ask(A, put(b"b", &[], true));
    s.ask(A, put(b"c", &[], true));
    assert_eq!(
        s.ask(A, put(b"d", &[], false)).1,
        Some(CoordReply::NotReady)
    );
    let (p, reply) = s.ask(A, put(b"d", &[], true));
    assert_eq!(reply, None, "a full queue makes put wait");
    assert_eq!(
        s.ask(B, CoordRequest::QueueSize { name: "q".into() }).1,
        Some(CoordReply::Count(2))
    );
    assert_eq!(
        s.ask(B, get(2, true)).1,
        Some(CoordReply::Values(vec![value(b"b", &[]), value(b"c", &[])]))
    );
    assert_eq!(
        s.reply_to(A, p),
        Some(CoordReply::Ok),
        "the waiting put went in"
    );
    assert_eq!(
        s.ask(B, get(0, false)).1,
        Some(CoordReply::Values(vec![value(b"d", &[])])),
        "count 0 takes everything there is"
    );
    assert_eq!(s.ask(B, get(1, false)).1, Some(CoordReply::NotReady));
}

#[test]
fn event_wakes_every_waiter_and_clear_resets_it() {
    let mut s = Scenario::new();
    let wait = |w| CoordRequest::EventWait {
        name: "e".into(),
        wait: w,
    };
    let (a, _) = s.ask(A, wait(true));
    let (b, _) = s.ask(B, wait(true));
    assert_eq!(s.ask(A, wait(false)).1, Some(CoordReply::Flag(false)));
    s.ask(A, CoordRequest::EventSet { name: "e".into() });
    assert_eq!(s.reply_to(A, a), Some(CoordReply::Flag(true)));
    assert_eq!(s.reply_to(B, b), Some(CoordReply::Flag(true)));
    assert_eq!(
        s.ask(B, wait(true)).1,
        Some(CoordReply::Flag(true)),
        "set: at once"
    );
    s.ask(A, CoordRequest::EventClear { name: "e".into() });
    assert_eq!(
        s.ask(A, CoordRequest::EventIsSet { name: "e".into() }).1,
        Some(CoordReply::Flag(false))
    );
}

#[test]
fn semaphore_grants_in_arrival_order_and_leases_die_with_their_connection() {
    let mut s = Scenario::new();
    assert_eq!(
        s.ask(A, acquire(&["s"], 2, "a1", true)).1,
        Some(CoordReply::Flag(true))
    );
    assert_eq!(
        s.ask(A, acquire(&["s"], 2, "a2", true)).1,
        Some(CoordReply::Flag(true))
    );
    assert_eq!(
        s.ask(B, acquire(&["s"], 2, "b1", false)).1,
        Some(CoordReply::Flag(false))
    );
    let (b1, reply) = s.ask(B, acquire(&["s"], 2, "b1", true));
    assert_eq!(reply, None);
    let (b2, _) = s.ask(B, acquire(&["s"], 2, "b2", true));
    assert_eq!(
        s.ask(B, CoordRequest::Leases { name: "s".into() }).1,
        Some(CoordReply::Count(2))
    );
    // A's connection closes: both its leases return, both of B's waits are granted.
    s.coord.on_client_lost(A, &mut s.fx);
    s.coord.sanity_check();
    assert_eq!(s.reply_to(B, b1), Some(CoordReply::Flag(true)));
    assert_eq!(s.reply_to(B, b2), Some(CoordReply::Flag(true)));
    assert_eq!(s.ask(B, release(&["s"], "b1")).1, Some(CoordReply::Ok));
    assert!(
        matches!(
            s.ask(B, release(&["s"], "b1")).1,
            Some(CoordReply::Error(_))
        ),
        "a lease released twice is an error"
    );
}

#[test]
fn multilock_takes_every_name_at_once_without_starving() {
    let mut s = Scenario::new();
    s.ask(A, acquire(&["x"], 1, "a", true));
    // B wants x and y together: waits for x; y stays free meanwhile for nobody earlier.
    let (both, reply) = s.ask(B, acquire(&["x", "y"], 1, "b", true));
    assert_eq!(reply, None);
    assert_eq!(
        s.ask(B, CoordRequest::Leases { name: "y".into() }).1,
        Some(CoordReply::Count(0)),
        "a multi-lock takes nothing until it can take everything"
    );
    // A later single request for y must not overtake B (which waits for y too).
    let (later, reply) = s.ask(A, acquire(&["y"], 1, "a-y", true));
    assert_eq!(reply, None, "arrival order per name");
    // Another name is not held up.
    assert_eq!(
        s.ask(A, acquire(&["z"], 1, "a-z", true)).1,
        Some(CoordReply::Flag(true))
    );
    s.ask(A, release(&["x"], "a"));
    assert_eq!(s.reply_to(B, both), Some(CoordReply::Flag(true)));
    assert_eq!(s.reply_to(A, later), None, "y is B's now");
    s.ask(B, release(&["x", "y"], "b"));
    assert_eq!(s.reply_to(A, later), Some(CoordReply::Flag(true)));
}

#[test]
fn cancel_answers_a_waiting_request_once_and_leaves_answered_ones() {
    let mut s = Scenario::new();
    s.ask(A, acquire(&["l"], 1, "a", true));
    let (w, _) = s.ask(B, acquire(&["l"], 1, "b", true));
    s.coord.on_cancel(B, w, &mut s.fx);
    assert_eq!(s.reply_to(B, w), Some(CoordReply::Cancelled));
    s.ask(A, release(&["l"], "a"));
    assert_eq!(
        s.reply_to(B, w),
        None,
        "a cancelled acquire is never granted"
    );
    assert_eq!(
        s.ask(A, CoordRequest::Leases { name: "l".into() }).1,
        Some(CoordReply::Count(0))
    );
    // Cancelling an answered request sends nothing.
    let (done, _) = s.ask(A, acquire(&["l"], 1, "a", true));
    s.coord.on_cancel(A, done, &mut s.fx);
    assert_eq!(s.reply_to(A, done), None);
}

#[test]
fn datasets_publish_once_unless_replaced_and_hold_their_keys() {
    let mut s = Scenario::new();
    let publish = |name: &str, keys: &[&str], replace| CoordRequest::DatasetPublish {
        name: name.into(),
        value: value(b"ds", keys),
        replace,
    };
    assert_eq!(
        s.ask(A, publish("b", &["k"], false)).1,
        Some(CoordReply::Ok)
    );
    assert_eq!(s.ask(A, publish("a", &[], false)).1, Some(CoordReply::Ok));
    assert!(
        matches!(s.ask(A, publish("b", &[], false)).1, Some(CoordReply::Error(m)) if m.contains("already published"))
    );
    assert_eq!(
        s.ask(B, CoordRequest::DatasetList).1,
        Some(CoordReply::Names(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        s.ask(B, CoordRequest::DatasetGet { name: "b".into() }).1,
        Some(CoordReply::Value(value(b"ds", &["k"])))
    );
    assert!(s.fx.given.contains(&(B, "k".to_string())));
    assert_eq!(s.fx.held.get("k"), Some(&1));
    s.ask(A, publish("b", &["k2"], true));
    assert_eq!(
        s.fx.held.get("k"),
        None,
        "the replaced dataset's keys are let go"
    );
    assert_eq!(
        s.ask(B, CoordRequest::DatasetDelete { name: "b".into() }).1,
        Some(CoordReply::Ok)
    );
    assert_eq!(
        s.ask(B, CoordRequest::DatasetGet { name: "b".into() }).1,
        Some(CoordReply::NotFound)
    );
    assert!(s.fx.held.is_empty());
}
