//! Which core function each worker and client message calls, and the replies the server
//! composes from the core's answers.

use super::comm::Comm;
use super::server::ServerState;
use bytes::Bytes;
use shoal_comm::ids::{ClientId, WorkerId};
use shoal_comm::message::{ClusterStatus, FromClient, FromWorker, ToClient};
use std::time::Instant;

impl ServerState {
    pub(super) fn on_worker_message(&mut self, id: WorkerId, msg: FromWorker, now: Instant) {
        self.task_stream
            .on_worker_message(id, &msg, &self.core, now);
        let (core, comm) = (&mut self.core, &mut self.comm);
        core.touch_worker(id, now);
        match msg {
            FromWorker::Register(_) | FromWorker::StartFailed(_) => {
                tracing::warn!(worker = %id, "a registered worker registered again or said it failed to start; ignored")
            }
            FromWorker::Started(ids) => core.on_tasks_started(id, &ids, comm),
            FromWorker::Finished(done) => core.on_tasks_finished(id, &done, comm),
            FromWorker::Failed(failed) => core.on_tasks_failed(id, failed, comm),
            FromWorker::StealReply(replies) => core.on_steal_reply(id, &replies, comm),
            FromWorker::MissingData {
                task,
                missing,
                holders,
            } => core.on_missing_data(id, task, missing, &holders, comm),
            FromWorker::Heartbeat(metrics) => core.on_worker_heartbeat(id, metrics, now),
            FromWorker::Retiring => core.on_worker_retiring(id, comm),
            FromWorker::Paused(paused) => core.on_worker_paused(id, paused, comm),
            FromWorker::Spilled { ids, on_disk } => core.on_worker_spilled(id, &ids, on_disk),
            FromWorker::Replicated(ids) => {
                core.on_worker_replicated(id, &ids, comm);
                if !self.retirements.is_empty() {
                    self.retirements.on_replicated(&ids);
                    self.retirements.progress(core, comm);
                }
            }
        }
    }

    pub(super) fn on_client_message(&mut self, id: ClientId, msg: FromClient, frames: Vec<Bytes>) {
        self.last_activity = Instant::now();
        match msg {
            FromClient::Submit {
                request,
                tasks,
                wants,
            } => {
                // Accepted slice by slice; the core sends the reply when it is in.
                self.core
                    .on_submit_request(id, request, tasks, wants, frames);
            }
            FromClient::Release { keys } => self.core.on_release_keys(id, keys, &mut self.comm),
            FromClient::Replicate { keys } => self.core.on_replicate(&keys, &mut self.comm),
            FromClient::Cancel { keys } => self.core.on_cancel(&keys, &mut self.comm),
            FromClient::WhoHas { request, keys } => {
                let (addresses, locations) = self.core.locate(&keys);
                self.comm.send_client(
                    id,
                    ToClient::WhoHasReply {
                        request,
                        addresses,
                        locations,
                    },
                );
            }
            FromClient::Status { request } => {
                let status = Box::new(self.status());
                self.comm
                    .send_client(id, ToClient::StatusReply { request, status });
            }
            FromClient::Shutdown => {
                tracing::info!(client = %id, "shutdown requested by a client");
                self.stop = true;
            }
            FromClient::Heartbeat => {}
            FromClient::Retry { keys } => self.core.on_retry(&keys, &mut self.comm),
            FromClient::Coord { request, op } => {
                let (coordination, mut fx) = self.coordination();
                coordination.on_request(id, request, op, &mut fx);
            }
            FromClient::CoordCancel { request } => {
                let (coordination, mut fx) = self.coordination();
                coordination.on_cancel(id, request, &mut fx);
            }
            FromClient::Restart {
                workers,
                cancel_all,
            } => {
                let targets = self.core.on_restart(&workers, cancel_all, &mut self.comm);
                tracing::info!(client = %id, workers = ?targets, cancel_all, "restarting workers on request");
            }
            FromClient::RetireWorkers { workers } => {
                let ids = self
                    .retirements
                    .on_retire(&mut self.core, &workers, &mut self.comm);
                tracing::info!(client = %id, workers = ?ids, "retiring workers on request");
            }
            FromClient::TaskStream {
                request,
                since,
                limit,
            } => {
                let records = self.task_stream.since(since, limit as usize);
                self.comm
                    .send_client(id, ToClient::TaskStreamReply { request, records });
            }
        }
    }

    /// The core's status with the server's own figures.
    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            scheduler_id: self.id.clone(),
            address: self.address.clone(),
            clients: self.comm.clients.len() as u32,
            failed_starts: self.failed_starts.iter().cloned().collect(),
            services: self.services.clone(),
            ..self.core.status()
        }
    }
}
