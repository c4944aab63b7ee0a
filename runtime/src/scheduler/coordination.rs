//! The named coordination state clients and tasks share through the scheduler:
//! variables, queues, events, semaphores (locks, multi-locks) and published datasets.
//!
//! Plain state changed by `on_*` functions, effects through [`CoordEffects`], like the
//! scheduling core. Values are opaque bytes; the keys a value refers to are held (kept in
//! the cluster) while the value is, and handed to the client that takes it out. Leases
//! belong to the connection that took them and are returned when it closes, so a task
//! holding a lock on a worker that dies does not keep it forever.

use rustc_hash::FxHashMap;
use shoal_comm::coordination::{CoordReply, CoordRequest, HeldValue};
use shoal_comm::ids::ClientId;
use std::collections::{BTreeMap, VecDeque};

/// What the coordination state asks of the scheduler.
pub trait CoordEffects {
    /// Answer request `request` of `client`.
    fn reply(&mut self, client: ClientId, request: u64, reply: CoordReply);
    /// Keep these keys in the cluster on behalf of the coordination state.
    fn hold(&mut self, keys: &[String]);
    /// Stop keeping these keys (one `hold` each).
    fn unhold(&mut self, keys: &[String]);
    /// `client` now holds futures on these keys (a value it took out refers to them).
    fn give(&mut self, client: ClientId, keys: &[String]);
}

/// A request waiting to be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    client: ClientId,
    request: u64,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<HeldValue>,
    /// Waiting gets, in arrival order, with how many items each wants.
    getters: VecDeque<(Waiter, u64)>,
    /// Waiting puts (the queue was full), in arrival order.
    putters: VecDeque<(Waiter, HeldValue, u64)>,
}

#[derive(Debug, Default)]
struct Event {
    set: bool,
    waiters: Vec<Waiter>,
}

#[derive(Debug)]
struct Semaphore {
    max_leases: u32,
    /// (lease, owner connection)
    holders: Vec<(String, ClientId)>,
}

#[derive(Debug)]
struct PendingAcquire {
    waiter: Waiter,
    names: Vec<String>,
    max_leases: u32,
    lease: String,
}

/// The coordination state of one scheduler.
#[derive(Debug, Default)]
pub struct Coordination {
    variables: FxHashMap<String, HeldValue>,
    variable_waiters: FxHashMap<String, Vec<Waiter>>,
    queues: FxHashMap<String, Queue>,
    events: FxHashMap<String, Event>,
    semaphores: FxHashMap<String, Semaphore>,
    /// Acquires that could not be granted yet, in arrival order.
    acquires: VecDeque<PendingAcquire>,
    datasets: BTreeMap<String, HeldValue>,
}

impl Coordination {
    /// Handle one request.
    pub fn on_request(
        &mut self,
        client: ClientId,
        request: u64,
        op: CoordRequest,
        fx: &mut impl CoordEffects,
    ) {
        let waiter = Waiter { client, request };
        let reply = match op {
            CoordRequest::VariableSet { name, value } => {
                fx.hold(&value.keys);
                for w in self.variable_waiters.remove(&name).unwrap_or_default() {
                    fx.give(w.client, &value.keys);
                    fx.reply(w.client, w.request, CoordReply::Value(value.clone()));
                }
                if let Some(old) = self.variables.insert(name, value) {
                    fx.unhold(&old.keys);
                }
                Some(CoordReply::Ok)
            }
            CoordRequest::VariableGet { name, wait } => match self.variables.get(&name) {
                Some(value) => {
                    fx.give(client, &value.keys);
                    Some(CoordReply::Value(value.clone()))
                }
                None if wait => {
                    self.variable_waiters.entry(name).or_default().push(waiter);
                    None
                }
                None => Some(CoordReply::NotFound),
            },
            CoordRequest::VariableDelete { name } => {
                if let Some(old) = self.variables.remove(&name) {
                    fx.unhold(&old.keys);
                }
                Some(CoordReply::Ok)
            }
            CoordRequest::QueuePut {
                name,
                value,
                maxsize,
                wait,
            } => {
                let queue = self.queues.entry(name.clone()).or_default();
                if maxsize > 0 && queue.items.len() as u64 >= maxsize {
                    if wait {
                        queue.putters.push_back((waiter, value, maxsize));
                        None
                    } else {
                        Some(CoordReply::NotReady)
                    }
                } else {
                    fx.hold(&value.keys);
                    queue.items.push_back(value);
                    self.serve_queue(&name, fx);
                    Some(CoordReply::Ok)
                }
            }
            CoordRequest::QueueGet { name, count, wait } => {
                let queue = self.queues.entry(name.clone()).or_default();
                if count == 0 {
                    let items: Vec<HeldValue> = queue.items.drain(..).collect();
                    let reply = Self::hand_out(client, items, fx);
                    self.serve_queue(&name, fx);
                    Some(reply)
                } else if queue.getters.is_empty() && queue.items.len() as u64 >= count {
                    let items: Vec<HeldValue> = queue.items.drain(..count as usize).collect();
                    let reply = Self::hand_out(client, items, fx);
                    self.serve_queue(&name, fx);
                    Some(reply)
                } else if wait {
                    queue.getters.push_back((waiter, count));
                    None
                } else {
                    Some(CoordReply::NotReady)
                }
            }
            CoordRequest::QueueSize { name } => Some(CoordReply::Count(
                self.queues.get(&name).map_or(0, |q| q.items.len() as u64),
            )),
            CoordRequest::EventSet { name } => {
                let event = self.events.entry(name).or_default();
                event.set = true;
                for w in event.waiters.drain(..) {
                    fx.reply(w.client, w.request, CoordReply::Flag(true));
                }
                Some(CoordReply::Ok)
            }
            CoordRequest::EventClear { name } => {
                if let Some(event) = self.events.get_mut(&name) {
                    event.set = false;
                }
                Some(CoordReply::Ok)
            }
            CoordRequest::EventWait { name, wait } => {
                let event = self.events.entry(name).or_default();
                if event.set {
                    Some(CoordReply::Flag(true))
                } else if wait {
                    event.waiters.push(waiter);
                    None
                } else {
                    Some(CoordReply::Flag(false))
                }
            }
            CoordRequest::EventIsSet { name } => Some(CoordReply::Flag(
                self.events.get(&name).is_some_and(|e| e.set),
            )),
            CoordRequest::Acquire {
                names,
                max_leases,
                lease,
                wait,
            } => {
                if names.is_empty() || max_leases == 0 {
                    Some(CoordReply::Error(
                        "acquire needs at least one name and max_leases of 1 or more".into(),
                    ))
                } else if self.can_grant(&names, max_leases)
                    && !self.earlier_waiter_wants(self.acquires.len(), &names)
                {
                    self.grant(client, &names, max_leases, lease);
                    Some(CoordReply::Flag(true))
                } else if wait {
                    self.acquires.push_back(PendingAcquire {
                        waiter,
                        names,
                        max_leases,
                        lease,
                    });
                    None
                } else {
                    Some(CoordReply::Flag(false))
                }
            }
            CoordRequest::Release { names, lease } => {
                let mut released = true;
                for name in &names {
                    released &= self.release_one(name, &lease);
                }
                self.serve_acquires(fx);
                Some(if released {
                    CoordReply::Ok
                } else {
                    CoordReply::Error(format!(
                        "lease {lease:?} does not hold {names:?}: released already, or never acquired"
                    ))
                })
            }
            CoordRequest::Leases { name } => Some(CoordReply::Count(
                self.semaphores
                    .get(&name)
                    .map_or(0, |s| s.holders.len() as u64),
            )),
            CoordRequest::DatasetPublish {
                name,
                value,
                replace,
            } => {
                if !replace && self.datasets.contains_key(&name) {
                    Some(CoordReply::Error(format!(
                        "a dataset named {name:?} is already published: unpublish it first, or publish with override=True"
                    )))
                } else {
                    fx.hold(&value.keys);
                    if let Some(old) = self.datasets.insert(name, value) {
                        fx.unhold(&old.keys);
                    }
                    Some(CoordReply::Ok)
                }
            }
            CoordRequest::DatasetGet { name } => Some(match self.datasets.get(&name) {
                Some(value) => {
                    fx.give(client, &value.keys);
                    CoordReply::Value(value.clone())
                }
                None => CoordReply::NotFound,
            }),
            CoordRequest::DatasetList => {
                Some(CoordReply::Names(self.datasets.keys().cloned().collect()))
            }
            CoordRequest::DatasetDelete { name } => Some(match self.datasets.remove(&name) {
                Some(old) => {
                    fx.unhold(&old.keys);
                    CoordReply::Ok
                }
                None => CoordReply::NotFound,
            }),
        };
        if let Some(reply) = reply {
            fx.reply(client, request, reply);
        }
    }

    /// The client stops waiting on `request`: answered `Cancelled` if it still waits (if
    /// it was answered already, that answer stands and nothing more is sent).
    pub fn on_cancel(&mut self, client: ClientId, request: u64, fx: &mut impl CoordEffects) {
        let waiter = Waiter { client, request };
        if self.forget_waiter(|w| *w == waiter) {
            fx.reply(client, request, CoordReply::Cancelled);
            self.serve_all(fx);
        }
    }

    /// A connection closed: its waiting requests are dropped and its leases returned.
    pub fn on_client_lost(&mut self, client: ClientId, fx: &mut impl CoordEffects) {
        self.forget_waiter(|w| w.client == client);
        for sem in self.semaphores.values_mut() {
            sem.holders.retain(|(_, owner)| *owner != client);
        }
        self.semaphores.retain(|_, s| !s.holders.is_empty());
        self.serve_all(fx);
    }

    /// Remove every waiting request `matches` selects; whether any was removed.
    fn forget_waiter(&mut self, matches: impl Fn(&Waiter) -> bool) -> bool {
        let mut removed = false;
        let mut drop_if = |w: &Waiter| {
            let m = matches(w);
            removed |= m;
            !m
        };
        for waiters in self.variable_waiters.values_mut() {
            waiters.retain(&mut drop_if);
        }
        self.variable_waiters.retain(|_, w| !w.is_empty());
        for queue in self.queues.values_mut() {
            queue.getters.retain(|(w, _)| drop_if(w));
            queue.putters.retain(|(w, _, _)| drop_if(w));
        }
        for event in self.events.values_mut() {
            event.waiters.retain(&mut drop_if);
        }
        self.acquires.retain(|a| drop_if(&a.waiter));
        removed
    }

    fn serve_all(&mut self, fx: &mut impl CoordEffects) {
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.serve_queue(&name, fx);
        }
        self.serve_acquires(fx);
    }

    /// Items taken out by `client`: it now holds their keys, the queue no longer does.
    fn hand_out(client: ClientId, items: Vec<HeldValue>, fx: &mut impl CoordEffects) -> CoordReply {
        for item in &items {
            fx.give(client, &item.keys);
            fx.unhold(&item.keys);
        }
        CoordReply::Values(items)
    }

    /// Satisfy waiting gets and puts of a queue, in arrival order, as far as possible.
    fn serve_queue(&mut self, name: &str, fx: &mut impl CoordEffects) {
        let Some(queue) = self.queues.get_mut(name) else {
            return;
        };
        loop {
            let mut progressed = false;
            if let Some(&(w, count)) = queue.getters.front() {
                if queue.items.len() as u64 >= count {
                    queue.getters.pop_front();
                    let items: Vec<HeldValue> = queue.items.drain(..count as usize).collect();
                    let reply = Self::hand_out(w.client, items, fx);
                    fx.reply(w.client, w.request, reply);
                    progressed = true;
                }
            }
            if let Some((_, _, maxsize)) = queue.putters.front() {
                if (queue.items.len() as u64) < *maxsize {
                    let (w, value, _) = queue.putters.pop_front().expect("front exists");
                    fx.hold(&value.keys);
                    queue.items.push_back(value);
                    fx.reply(w.client, w.request, CoordReply::Ok);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if queue.items.is_empty() && queue.getters.is_empty() && queue.putters.is_empty() {
            self.queues.remove(name);
        }
    }

    fn can_grant(&self, names: &[String], max_leases: u32) -> bool {
        names.iter().all(|n| {
            self.semaphores
                .get(n)
                .map_or(max_leases > 0, |s| (s.holders.len() as u32) < s.max_leases)
        })
    }

    fn grant(&mut self, client: ClientId, names: &[String], max_leases: u32, lease: String) {
        for name in names {
            self.semaphores
                .entry(name.clone())
                .or_insert_with(|| Semaphore {
                    max_leases,
                    holders: Vec::new(),
                })
                .holders
                .push((lease.clone(), client));
        }
    }

    fn release_one(&mut self, name: &str, lease: &str) -> bool {
        let Some(sem) = self.semaphores.get_mut(name) else {
            return false;
        };
        let Some(pos) = sem.holders.iter().position(|(l, _)| l == lease) else {
            return false;
        };
        sem.holders.swap_remove(pos);
        if sem.holders.is_empty() {
            self.semaphores.remove(name);
        }
        true
    }

    /// Whether a waiting acquire before position `before` wants one of `names` (it goes
    /// first: leases on a name are granted in arrival order, so none starves).
    fn earlier_waiter_wants(&self, before: usize, names: &[String]) -> bool {
        self.acquires
            .iter()
            .take(before)
            .any(|a| a.names.iter().any(|n| names.contains(n)))
    }

    /// Grant waiting acquires in arrival order; one that cannot be granted yet holds up
    /// later ones on the same names only.
    fn serve_acquires(&mut self, fx: &mut impl CoordEffects) {
        let mut i = 0;
        while i < self.acquires.len() {
            let a = &self.acquires[i];
            if self.can_grant(&a.names, a.max_leases) && !self.earlier_waiter_wants(i, &a.names) {
                let a = self.acquires.remove(i).expect("index in range");
                self.grant(a.waiter.client, &a.names, a.max_leases, a.lease);
                fx.reply(a.waiter.client, a.waiter.request, CoordReply::Flag(true));
            } else {
                i += 1;
            }
        }
    }

    /// Whether a dataset whose name starts with `prefix` is published.
    pub fn has_dataset_prefix(&self, prefix: &str) -> bool {
        self.datasets
            .range(prefix.to_string()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(prefix))
    }

    /// Check the invariants; used after each step in tests.
    pub fn sanity_check(&self) {
        for (name, sem) in &self.semaphores {
            assert!(!sem.holders.is_empty(), "empty semaphore {name} kept");
            assert!(
                sem.holders.len() as u32 <= sem.max_leases,
                "{name}: {} holders of {}",
                sem.holders.len(),
                sem.max_leases
            );
        }
        for (i, a) in self.acquires.iter().enumerate() {
            assert!(
                !self.can_grant(&a.names, a.max_leases) || self.earlier_waiter_wants(i, &a.names),
                "grantable acquire {:?} left waiting",
                a.names
            );
        }
        for (name, q) in &self.queues {
            if let Some((_, count)) = q.getters.front() {
                assert!(
                    (q.items.len() as u64) < *count,
                    "{name}: servable getter waits"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
