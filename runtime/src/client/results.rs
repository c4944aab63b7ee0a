//! Finding and fetching results: where keys are held, waiting for those being recomputed,
//! and fetching them straight from their holders.

use super::{Client, ClientError};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use shoal_comm::ids::TaskId;
use shoal_comm::message::{DataReply, FromClient, KeyLocation, KeyState, ToClient};
use std::time::{Duration, Instant};

/// How often `fetch` locates a result again after its holder failed to deliver it.
const FETCH_ATTEMPTS: u32 = 10;

/// How long `fetch` waits for results that are being recomputed after their worker left.
pub const RECOMPUTE_WAIT: Duration = Duration::from_secs(600);

/// A who-has answer: a location per key asked about, holders as indices into
/// `addresses`.
struct Located {
    addresses: Vec<String>,
    locations: Vec<KeyLocation>,
}

impl Client {
    /// Where `keys` are held. A key whose holder left after it finished is being
    /// recomputed from its lineage: wait for it (up to [`RECOMPUTE_WAIT`]) instead of
    /// failing, so a worker leaving between "done" and "gather" loses nothing.
    async fn locate_held(&self, keys: &[String]) -> Result<Located, ClientError> {
        let deadline = Instant::now() + RECOMPUTE_WAIT;
        loop {
            let located = self.locate(keys).await?;
            let recomputing: Vec<String> = keys
                .iter()
                .zip(&located.locations)
                .filter(|(_, l)| l.computing)
                .map(|(key, _)| key.clone())
                .collect();
            if recomputing.is_empty() {
                return Ok(located);
            }
            {
                let mut shared = self.lock();
                for key in &recomputing {
                    shared.states.remove(key);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(
                    RECOMPUTE_WAIT,
                    format!(
                        "{} keys lost with their worker to be recomputed",
                        recomputing.len()
                    ),
                ));
            }
            tracing::info!(
                keys = recomputing.len(),
                "results lost with their worker are being recomputed; waiting"
            );
            self.wait(&recomputing, Some(left)).await?;
        }
    }

    /// Fetch the results of finished keys straight from the workers holding them.
    ///
    /// # Errors
    /// A key failed, was cancelled, is unknown, or no holder could deliver it.
    pub async fn fetch(&self, keys: &[String]) -> Result<Vec<Bytes>, ClientError> {
        // A holder can die between "where is it" and the fetch: ask again (the scheduler
        // will have noticed and be recomputing), a bounded number of times.
        let mut attempt = 0;
        loop {
            let located = self.locate_held(keys).await?;
            match self.fetch_from(keys, &located).await {
                Err(ClientError::Fetch { key, cause }) if attempt < FETCH_ATTEMPTS => {
                    attempt += 1;
                    tracing::info!(%key, %cause, attempt, "fetch failed; locating the result again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                result => return result,
            }
        }
    }

    async fn fetch_from(
        &self,
        keys: &[String],
        located: &Located,
    ) -> Result<Vec<Bytes>, ClientError> {
        // The keys each holder is asked for, by index into `located.addresses`.
        let mut by_holder: Vec<Vec<(usize, TaskId)>> = vec![Vec::new(); located.addresses.len()];
        for (i, loc) in located.locations.iter().enumerate() {
            match (&loc.state, loc.task, loc.holders.first()) {
                (Some(KeyState::Erred(e)), _, _) => {
                    return Err(ClientError::TaskFailed(Box::new(e.clone())))
                }
                (_, Some(task), Some(&holder)) if (holder as usize) < by_holder.len() => {
                    by_holder[holder as usize].push((i, task))
                }
                _ => {
                    return Err(ClientError::Fetch {
                        key: keys[i].clone(),
                        cause: "no worker holds it (not computed, released or lost)".into(),
                    })
                }
            }
        }
        // Every holder at once, each over its kept connection.
        let mut requests = tokio::task::JoinSet::new();
        for (holder, wanted) in located.addresses.iter().zip(by_holder) {
            if wanted.is_empty() {
                continue;
            }
            let (pool, holder) = (self.data.clone(), holder.clone());
            requests.spawn(async move {
                let ids: Vec<TaskId> = wanted.iter().map(|(_, t)| *t).collect();
                let reply = pool.get(&holder, ids).await;
                (holder, wanted, reply)
            });
        }
        let mut out = vec![Bytes::new(); keys.len()];
        while let Some(done) = requests.join_next().await {
            let (holder, wanted, raw) =
                done.map_err(|e| ClientError::Closed(format!("a fetch task failed: {e}")))?;
            let first_key = keys[wanted[0].0].clone();
            let fail = |cause: String| ClientError::Fetch {
                key: first_key.clone(),
                cause,
            };
            let raw = raw.map_err(|e| {
                self.data.forget(&holder);
                fail(crate::error::chain(&e))
            })?;
            let reply: DataReply = raw.decode().map_err(|e| fail(e.to_string()))?;
            let frames: FxHashMap<TaskId, u32> = reply.found.into_iter().collect();
            for &(i, task) in &wanted {
                let frame = frames.get(&task).ok_or_else(|| ClientError::Fetch {
                    key: keys[i].clone(),
                    cause: format!("{holder} no longer holds it"),
                })?;
                out[i] = raw.frame(*frame).map_err(|e| fail(e.to_string()))?.clone();
            }
        }
        Ok(out)
    }

    /// Wait for keys and fetch their results; a failed key is an error.
    ///
    /// # Errors
    /// As [`Client::wait`] and [`Client::fetch`]; a failed or cancelled key.
    pub async fn gather(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
    ) -> Result<Vec<Bytes>, ClientError> {
        for (key, state) in keys.iter().zip(self.wait(keys, timeout).await?) {
            match state {
                KeyState::Erred(e) => return Err(ClientError::TaskFailed(Box::new(e))),
                KeyState::Cancelled => return Err(ClientError::Cancelled(key.clone())),
                KeyState::Memory { .. } => {}
            }
        }
        self.fetch(keys).await
    }

    /// The data-server addresses of the workers holding each key (empty if not in memory).
    ///
    /// # Errors
    /// The connection closed.
    pub async fn who_has(&self, keys: &[String]) -> Result<Vec<Vec<String>>, ClientError> {
        let located = self.locate(keys).await?;
        let addresses = &located.addresses;
        Ok(located
            .locations
            .into_iter()
            .map(|l| {
                l.holders
                    .iter()
                    .filter_map(|&h| addresses.get(h as usize).cloned())
                    .collect()
            })
            .collect())
    }

    /// One who-has round trip: where `keys` are now.
    async fn locate(&self, keys: &[String]) -> Result<Located, ClientError> {
        let reply = self
            .request(
                |request| FromClient::WhoHas {
                    request,
                    keys: keys.to_vec(),
                },
                Vec::new(),
            )
            .await?;
        let ToClient::WhoHasReply {
            addresses,
            locations,
            ..
        } = reply
        else {
            return Err(ClientError::Refused("unexpected reply to who-has".into()));
        };
        if locations.len() != keys.len() {
            return Err(ClientError::Refused(format!(
                "the scheduler located {} keys of {}",
                locations.len(),
                keys.len()
            )));
        }
        Ok(Located {
            addresses,
            locations,
        })
    }
}
