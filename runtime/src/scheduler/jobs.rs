//! Long client requests done in bounded slices, in arrival order: accepting a graph,
//! releasing or cancelling many keys. A request arriving while jobs are pending becomes a
//! job too, so it applies to what the requests before it did.

use super::comm::Comm;
use super::core::Core;
use super::graph::Submission;
use shoal_comm::ids::ClientId;

/// One long request.
#[derive(Debug)]
pub enum Job {
    /// A graph being accepted.
    Submit(Box<Submission>),
    /// `client` drops its futures on `keys[pos..]`.
    Release {
        /// The client.
        client: ClientId,
        /// Keys it released.
        keys: Vec<String>,
        /// How many of `keys` are done.
        pos: usize,
    },
    /// A client left: the tasks it wanted are released, then it is forgotten.
    ClientLost(ClientId),
    /// `keys[pos..]` are cancelled for everyone.
    Cancel {
        /// Keys cancelled.
        keys: Vec<String>,
        /// How many of `keys` are done.
        pos: usize,
    },
}

impl Core {
    /// Advance the pending jobs within `budget`. Returns whether any remain.
    pub(crate) fn jobs_slice(&mut self, budget: &mut usize, comm: &mut impl Comm) -> bool {
        while *budget > 0 {
            let Some(mut job) = self.jobs.pop_front() else {
                break;
            };
            let done = match &mut job {
                Job::Submit(_) => {
                    self.jobs.push_front(job);
                    self.submission_step(budget, comm);
                    continue;
                }
                Job::Release { client, keys, pos } => {
                    while *pos < keys.len() && *budget > 0 {
                        self.release_key(*client, &keys[*pos]);
                        *pos += 1;
                        *budget -= 1;
                    }
                    *pos == keys.len()
                }
                Job::ClientLost(client) => self.drop_client_wants(*client, budget),
                Job::Cancel { keys, pos } => {
                    while *pos < keys.len() && *budget > 0 {
                        self.cancel_key(&keys[*pos], comm);
                        *pos += 1;
                        *budget -= 1;
                    }
                    *pos == keys.len()
                }
            };
            if !done {
                self.jobs.push_front(job);
            }
        }
        !self.jobs.is_empty()
    }
}
