//! Authenticated peers sending nonsense to a real scheduler process: each message is
//! answered with an error or dropped, and the scheduler keeps serving everyone else (a
//! graph submitted by an ordinary client afterwards computes on the cluster's worker).

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{sum, Cluster};
use serde_json::json;
use shoal_comm::auth::{self, Role};
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::*;
use shoal_comm::transport::{tcp_split, MessageRead, MessageWrite, TcpReader, TcpWriter};
use shoal_comm::{RawMessage, Secret};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// An authenticated raw connection to the scheduler of `cluster`.
async fn connect(cluster: &Cluster, role: Role) -> (TcpReader, TcpWriter) {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cluster.file).unwrap()).unwrap();
    let address = file["address"]
        .as_str()
        .unwrap()
        .trim_start_matches("tcp://");
    let secret = Secret::from_hex(file["secret"].as_str().unwrap()).unwrap();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut r, mut w) = tcp_split(stream);
    auth::connect(&mut r, &mut w, &secret, role, "nonsense", T)
        .await
        .unwrap();
    (r, w)
}

async fn send<M: serde::Serialize>(w: &mut TcpWriter, msg: &M, frames: Vec<Bytes>) {
    w.send(&RawMessage::encode(msg, frames).unwrap())
        .await
        .unwrap();
    w.flush().await.unwrap();
}

/// The next message to a client that is not a heartbeat.
async fn reply(r: &mut TcpReader) -> ToClient {
    reply_within(r, T).await
}

async fn reply_within(r: &mut TcpReader, within: Duration) -> ToClient {
    loop {
        let raw = tokio::time::timeout(within, r.recv())
            .await
            .expect("the scheduler did not answer")
            .unwrap()
            .expect("the scheduler closed the connection");
        match raw.decode::<ToClient>().unwrap() {
            ToClient::Heartbeat => continue,
            other => return other,
        }
    }
}

/// The scheduler still serves: an ordinary client's graph computes.
fn still_serves(cluster: &Cluster, tag: &str) {
    let key = format!("after-{tag}");
    let (ok, out) = cluster.run_graph(&json!({
        "tasks": [sum(&key, &[], 41, 0), sum("plus-one", &[&key], 1, 0)],
        "outputs": ["plus-one"]
    }));
    assert!(
        ok && out["results"]["plus-one"] == json!(42),
        "after {tag}: {out}"
    );
    assert_eq!(cluster.status()["workers"].as_array().unwrap().len(), 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_client_sending_nonsense_is_answered_and_others_are_served() {
    let cluster = Cluster::start(1, 1, &[], &[]);
    let rt = runtime();
    rt.block_on(async {
        let (mut r, mut w) = connect(&cluster, Role::Client).await;
        let never: Vec<String> = vec!["never-had".into(), String::new()];
        send(
            &mut w,
            &FromClient::Release {
                keys: never.clone(),
            },
            vec![],
        )
        .await;
        send(
            &mut w,
            &FromClient::Cancel {
                keys: never.clone(),
            },
            vec![],
        )
        .await;
        send(
            &mut w,
            &FromClient::Replicate {
                keys: never.clone(),
            },
            vec![],
        )
        .await;
        send(
            &mut w,
            &FromClient::WhoHas {
                request: 1,
                keys: never.clone(),
            },
            vec![],
        )
        .await;
        match reply(&mut r).await {
            ToClient::WhoHasReply {
                request: 1,
                locations,
                ..
            } => {
                assert!(locations.iter().all(|l| l.task.is_none()), "{locations:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A task depending on a key nobody has, a payload frame that is not there, and
        // the same key twice: each submission refused with a reason.
        let mut missing_frame = TaskSpec::new("p", ExecutorKind::Sum, vec![]);
        missing_frame.payload = Some(7);
        let graphs = [
            vec![TaskSpec::new(
                "orphan",
                ExecutorKind::Sum,
                vec!["ghost".into()],
            )],
            vec![missing_frame],
            vec![
                TaskSpec::new("twice", ExecutorKind::Noop, vec![]),
                TaskSpec::new("twice", ExecutorKind::Noop, vec![]),
            ],
            vec![TaskSpec::new(
                "self",
                ExecutorKind::Sum,
                vec!["self".into()],
            )],
        ];
        for (i, tasks) in graphs.into_iter().enumerate() {
            let request = 10 + i as u64;
            let wants = tasks.iter().map(|t| t.key.clone()).collect();
            send(
                &mut w,
                &FromClient::Submit {
                    request,
                    tasks,
                    wants,
                },
                vec![],
            )
            .await;
            match reply(&mut r).await {
                ToClient::SubmitReply {
                    request: got,
                    error,
                } => {
                    assert_eq!(got, request);
                    assert!(error.is_some(), "graph {i} was accepted");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Bytes that are no message, and a message announcing ten million tasks in a
        // few bytes (msgpack: Submit map, then an array header of 10^7).
        let garbage = RawMessage {
            control: Bytes::from_static(b"\xc1\xc1 not msgpack"),
            frames: vec![],
        };
        w.send(&garbage).await.unwrap();
        let mut announced = vec![0x81, 0xa6];
        announced.extend_from_slice(b"Submit");
        announced.extend_from_slice(&[0x93, 0x01, 0xdd]);
        announced.extend_from_slice(&10_000_000u32.to_be_bytes());
        announced.extend_from_slice(&[0x90]);
        w.send(&RawMessage {
            control: announced.into(),
            frames: vec![],
        })
        .await
        .unwrap();
        w.flush().await.unwrap();
        for _ in 0..2 {
            match reply(&mut r).await {
                ToClient::Error { message } => {
                    assert!(message.contains("could not read your message"), "{message}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Still connected and answered.
        send(&mut w, &FromClient::Status { request: 99 }, vec![]).await;
        assert!(matches!(
            reply(&mut r).await,
            ToClient::StatusReply { request: 99, .. }
        ));
    });
    still_serves(&cluster, "client nonsense");
}

#[test]
fn a_client_submitting_ten_million_tasks_at_once_does_not_stop_the_scheduler() {
    let cluster = Cluster::start(1, 1, &[], &[]);
    let rt = runtime();
    rt.block_on(async {
        let (mut r, mut w) = connect(&cluster, Role::Client).await;
        // Ten million tasks, each depending on a key that does not exist: the whole
        // graph is refused (after the scheduler read it), nothing of it stays.
        let tasks: Vec<TaskSpec> = (0..10_000_000u32)
            .map(|i| TaskSpec::new(format!("t{i}"), ExecutorKind::Noop, vec!["ghost".into()]))
            .collect();
        send(
            &mut w,
            &FromClient::Submit {
                request: 1,
                tasks,
                wants: vec!["t0".into()],
            },
            vec![],
        )
        .await;
        // A debug-build scheduler takes about 30 s to read and refuse it.
        match reply_within(&mut r, Duration::from_secs(300)).await {
            ToClient::SubmitReply { request: 1, error } => {
                let error = error.expect("a graph with a missing dependency was accepted");
                assert!(error.contains("ghost"), "{error}");
            }
            ToClient::Error { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    });
    still_serves(&cluster, "ten million tasks");
}

#[test]
fn a_worker_sending_nonsense_is_dropped_or_ignored_and_others_are_served() {
    let cluster = Cluster::start(1, 1, &[], &[]);
    let rt = runtime();
    rt.block_on(async {
        let (mut r, mut w) = connect(&cluster, Role::Worker).await;
        // Before registering: anything else.
        send(
            &mut w,
            &FromWorker::Finished(vec![TaskFinished {
                id: TaskId(1),
                size: 1,
            }]),
            vec![],
        )
        .await;
        let registration = registration("liar");
        send(&mut w, &FromWorker::Register(registration.clone()), vec![]).await;
        let unknown = vec![TaskId(123_456), TaskId(u64::MAX)];
        let messages = vec![
            FromWorker::Register(registration),
            FromWorker::Started(unknown.clone()),
            FromWorker::Finished(vec![
                TaskFinished {
                    id: TaskId(123_456),
                    size: 8,
                },
                TaskFinished {
                    id: TaskId(123_456),
                    size: 8,
                },
            ]),
            FromWorker::Failed(vec![TaskFailed {
                id: TaskId(77),
                error: TaskError {
                    key: "x".into(),
                    kind: shoal_comm::message::TaskErrorKind::TaskFailed,
                    message: "lie".into(),
                    traceback: None,
                    exception: vec![],
                },
            }]),
            FromWorker::StealReply(vec![(TaskId(5), true), (TaskId(5), false)]),
            FromWorker::MissingData {
                task: TaskId(1),
                missing: TaskId(2),
                holders: vec![WorkerId(999)],
            },
            FromWorker::Spilled {
                ids: unknown.clone(),
                on_disk: true,
            },
            FromWorker::Replicated(unknown),
            FromWorker::Paused(true),
            FromWorker::Paused(false),
        ];
        // The scheduler may drop this worker at any of them ("dropped or ignored"): stop
        // sending once the connection is gone.
        for m in &messages {
            let sent = async {
                w.send(&RawMessage::encode(m, vec![]).unwrap()).await?;
                w.flush().await
            };
            if sent.await.is_err() {
                break;
            }
        }
        w.send(&RawMessage {
            control: Bytes::from_static(b"\xc1"),
            frames: vec![],
        })
        .await
        .ok();
        w.flush().await.ok();
        // The scheduler may answer or close this connection, but it must not stall.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = r.recv().await {}
        })
        .await;
    });
    still_serves(&cluster, "worker nonsense");
}

fn registration(name: &str) -> Registration {
    Registration {
        name: name.into(),
        nthreads: 1,
        memory_limit: 0,
        resources: vec![],
        data_address: "tcp://127.0.0.1:1".into(),
        host: "127.0.0.1".into(),
        pid: 1,
        executors: vec![ExecutorKind::Sum],
    }
}

#[test]
fn a_worker_finishing_its_task_twice_is_ignored() {
    let mut cluster = Cluster::start(0, 1, &[], &[]);
    let rt = runtime();
    let (mut r, mut w) = rt.block_on(connect(&cluster, Role::Worker));
    rt.block_on(send(
        &mut w,
        &FromWorker::Register(registration("twice")),
        vec![],
    ));
    let run = cluster.spawn_run_graph(&json!({"tasks": [sum("k", &[], 1, 0)], "outputs": ["k"]}));
    rt.block_on(async {
        let id = loop {
            let raw = tokio::time::timeout(T, r.recv())
                .await
                .expect("no task came")
                .unwrap()
                .unwrap();
            if let ToWorker::Compute(tasks) = raw.decode::<ToWorker>().unwrap() {
                break tasks[0].id;
            }
        };
        let done = || FromWorker::Finished(vec![TaskFinished { id, size: 0 }]);
        send(&mut w, &FromWorker::Started(vec![id, id]), vec![]).await;
        send(&mut w, &done(), vec![]).await;
        send(&mut w, &done(), vec![]).await;
        send(
            &mut w,
            &FromWorker::Failed(vec![TaskFailed {
                id,
                error: TaskError {
                    key: String::new(),
                    kind: shoal_comm::message::TaskErrorKind::TaskFailed,
                    message: "after it finished".into(),
                    traceback: None,
                    exception: vec![],
                },
            }]),
            vec![],
        )
        .await;
        send(&mut w, &done(), vec![]).await;
    });
    let out = run.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"k\""), "{text}");
    // The liar leaves; a real worker joins and the cluster computes.
    drop((r, w));
    cluster.add_worker(1, &[]);
    let deadline = std::time::Instant::now() + T;
    while cluster.status()["workers"].as_array().unwrap().len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the liar was not dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    still_serves(&cluster, "a task finished twice");
}
