//! The coordination state's effects on the rest of the scheduler: replies to clients, and
//! keys kept alive through the core (once per key, however many values refer to them).

use super::comm::Comm;
use super::coordination::CoordEffects;
use super::core::Core;
use rustc_hash::FxHashMap;
use shoal_comm::coordination::CoordReply;
use shoal_comm::ids::ClientId;
use shoal_comm::message::ToClient;

/// The coordination state's effects: replies to clients, and keys kept alive through the
/// core (once per key, however many values refer to it).
pub(super) struct CoordBridge<'a, C: Comm> {
    pub(super) core: &'a mut Core,
    pub(super) comm: &'a mut C,
    /// The core's client on whose behalf keys are kept.
    pub(super) holder: ClientId,
    /// How many coordination values refer to each key (held once in the core).
    pub(super) holds: &'a mut FxHashMap<String, u32>,
}

impl<C: Comm> CoordBridge<'_, C> {
    fn want(&mut self, client: ClientId, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self
            .core
            .on_submit(client, Vec::new(), keys, &[], self.comm)
        {
            // The value refers to a result that is gone already (its futures were released).
            tracing::warn!(client = %client, error = %e, "a coordination value refers to a result no longer in the cluster");
        }
    }
}

impl<C: Comm> CoordEffects for CoordBridge<'_, C> {
    fn reply(&mut self, client: ClientId, request: u64, reply: CoordReply) {
        self.comm
            .send_client(client, ToClient::CoordReply { request, reply });
    }

    fn hold(&mut self, keys: &[String]) {
        let mut new = Vec::new();
        for key in keys {
            let n = self.holds.entry(key.clone()).or_default();
            *n += 1;
            if *n == 1 {
                new.push(key.clone());
            }
        }
        self.want(self.holder, new);
    }

    fn unhold(&mut self, keys: &[String]) {
        let mut gone = Vec::new();
        for key in keys {
            if let Some(n) = self.holds.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.holds.remove(key);
                    gone.push(key.clone());
                }
            }
        }
        if !gone.is_empty() {
            self.core.on_release(self.holder, &gone, self.comm);
        }
    }

    fn give(&mut self, client: ClientId, keys: &[String]) {
        self.want(client, keys.to_vec());
    }
}
