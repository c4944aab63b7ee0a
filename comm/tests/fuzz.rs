//! Fuzzing of everything in shoal-comm that reads bytes from a peer: the frame parser
//! (with the handshake's limits, before authentication, and the default ones, after), the
//! handshake on both sides, and every control message's decoder. Seeds are valid
//! messages; see `shoal_comm::fuzz` for the mutations. `SHOAL_FUZZ_INPUTS` sets the count
//! per target (`scripts/fuzz` runs 10^6).
//!
//! Besides "never panics, never hangs", every target checks that no single allocation
//! was much larger than the input: an announced length alone must not reserve memory.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use shoal_comm::auth::{self, Role};
use shoal_comm::frame::Limits;
use shoal_comm::ids::{TaskId, WorkerId};
use shoal_comm::message::*;
use shoal_comm::transport::{MessageRead, MessageWrite, StreamReader, StreamWriter};
use shoal_comm::{fuzz, CommError, RawMessage, Secret};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records the largest single allocation since the last reset.
struct Watched;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

/// The most one input may make the code under test allocate at once: what the stream
/// reader reserves ahead of a part's bytes (64 MiB), plus room proportional to the input.
const ALLOWED: usize = (64 << 20) + (1 << 20);

/// Run `target` under the allocation check.
fn bounded(name: &str, input: &[u8], target: impl FnOnce(&[u8])) {
    LARGEST.store(0, Ordering::Relaxed);
    target(input);
    let largest = LARGEST.load(Ordering::Relaxed);
    let allowed = ALLOWED + 64 * input.len();
    assert!(
        largest <= allowed,
        "{name}: one allocation of {largest} bytes for an input of {} bytes",
        input.len()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The bytes of `messages` as they travel on a stream.
fn wire(messages: &[RawMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&m.header().unwrap());
        out.extend_from_slice(&m.control);
        for f in &m.frames {
            out.extend_from_slice(f);
        }
    }
    out
}

fn spec(key: &str, deps: &[&str]) -> TaskSpec {
    let mut s = TaskSpec::new(
        key,
        ExecutorKind::Sum,
        deps.iter().map(|d| d.to_string()).collect(),
    );
    s.resources.push(Resource {
        name: "GPU".into(),
        amount: 1.0,
    });
    s
}

fn from_client() -> Vec<FromClient> {
    vec![
        FromClient::Submit {
            request: 1,
            tasks: vec![spec("a", &[]), spec("b", &["a"])],
            wants: vec!["b".into()],
        },
        FromClient::Release {
            keys: vec!["a".into(), "b".into()],
        },
        FromClient::Cancel {
            keys: vec!["x".into()],
        },
        FromClient::WhoHas {
            request: 2,
            keys: vec!["a".into()],
        },
        FromClient::Replicate {
            keys: vec!["a".into()],
        },
        FromClient::Status { request: 3 },
        FromClient::Shutdown,
        FromClient::Heartbeat,
    ]
}

fn from_worker() -> Vec<FromWorker> {
    vec![
        FromWorker::Register(Registration {
            name: "w".into(),
            nthreads: 4,
            memory_limit: 1 << 30,
            resources: vec![Resource {
                name: "GPU".into(),
                amount: 2.0,
            }],
            data_address: "tcp://127.0.0.1:1".into(),
            host: "h".into(),
            pid: 1,
            executors: vec![ExecutorKind::Sum],
        }),
        FromWorker::Started(vec![TaskId(1), TaskId(2)]),
        FromWorker::Finished(vec![TaskFinished {
            id: TaskId(1),
            size: 8,
        }]),
        FromWorker::Failed(vec![TaskFailed {
            id: TaskId(2),
            error: TaskError {
                key: String::new(),
                kind: shoal_comm::message::TaskErrorKind::TaskFailed,
                message: "boom".into(),
                traceback: Some("tb".into()),
                exception: vec![1, 2, 3],
            },
        }]),
        FromWorker::Heartbeat(WorkerMetrics::default()),
        FromWorker::StealReply(vec![(TaskId(3), true)]),
        FromWorker::MissingData {
            task: TaskId(1),
            missing: TaskId(2),
            holders: vec![WorkerId(1)],
        },
        FromWorker::Retiring,
        FromWorker::Paused(true),
        FromWorker::Spilled {
            ids: vec![TaskId(5)],
            on_disk: true,
        },
        FromWorker::Replicated(vec![TaskId(6)]),
    ]
}

fn to_worker() -> Vec<ToWorker> {
    vec![
        ToWorker::Registered {
            id: WorkerId(1),
            heartbeat_ms: 1000,
            peers: vec![(WorkerId(2), "tcp://127.0.0.1:2".into())],
        },
        ToWorker::Compute(vec![ComputeTask {
            id: TaskId(1),
            kind: ExecutorKind::Sum,
            payload: Some(0),
            priority: -3,
            inputs: vec![Input {
                id: TaskId(0),
                holders: vec![WorkerId(2)],
                size: 8,
            }],
            resources: vec![],
        }]),
        ToWorker::Steal(vec![TaskId(1)]),
        ToWorker::Release(vec![TaskId(1)]),
        ToWorker::PeerJoined(WorkerId(3), "tcp://h:3".into()),
        ToWorker::PeerLeft(WorkerId(3)),
        ToWorker::Heartbeat,
        ToWorker::Shutdown,
    ]
}

fn to_client() -> Vec<ToClient> {
    vec![
        ToClient::SubmitReply {
            request: 1,
            error: Some("no".into()),
        },
        ToClient::Error {
            message: "bad".into(),
        },
        ToClient::Heartbeat,
    ]
}

fn encoded<T: serde::Serialize>(messages: &[T]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .map(|m| RawMessage::encode(m, vec![]).unwrap().control.to_vec())
        .collect()
}

/// Framed streams of several messages with data frames.
fn stream_seeds() -> Vec<Vec<u8>> {
    let frames = vec![Bytes::from(vec![7u8; 100]), Bytes::new()];
    let mut seeds = Vec::new();
    for m in from_client() {
        seeds.push(wire(&[RawMessage::encode(&m, frames.clone()).unwrap()]));
    }
    let all: Vec<RawMessage> = from_worker()
        .iter()
        .map(|m| RawMessage::encode(m, vec![Bytes::from_static(b"xyz")]).unwrap())
        .collect();
    seeds.push(wire(&all));
    seeds
}

/// Read every message of `input` with `limits`; must end in `None` or an error.
fn read_all(rt: &tokio::runtime::Runtime, input: &[u8], limits: Limits) {
    let mut reader = StreamReader::new(std::io::Cursor::new(input.to_vec()));
    reader.set_limits(limits);
    rt.block_on(async {
        for _ in 0..input.len() + 1 {
            match reader.recv().await {
                Ok(Some(msg)) => {
                    // Whatever arrived decodes or is refused, never panics.
                    let _ = msg.decode::<FromWorker>();
                    let _ = msg.decode::<FromClient>();
                }
                Ok(None) | Err(_) => return,
            }
        }
        panic!("more messages than bytes");
    });
}

#[test]
fn fuzz_frame_parser_before_authentication() {
    let rt = runtime();
    fuzz::run(
        "frame-parser-handshake-limits",
        11,
        &stream_seeds(),
        |input| {
            bounded("frame parser", input, |i| {
                read_all(&rt, i, Limits::HANDSHAKE)
            })
        },
    );
}

#[test]
fn fuzz_frame_parser_after_authentication() {
    let rt = runtime();
    fuzz::run(
        "frame-parser-default-limits",
        12,
        &stream_seeds(),
        |input| bounded("frame parser", input, |i| read_all(&rt, i, Limits::DEFAULT)),
    );
}

#[test]
fn announced_lengths_alone_reserve_little_memory() {
    let rt = runtime();
    // A header announcing the largest control part and frames the limits allow, and
    // then nothing: the reader must fail (truncated) without reserving it all.
    let mut header = Vec::new();
    header.extend_from_slice(&Limits::DEFAULT.max_control.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&Limits::DEFAULT.max_frame.to_le_bytes());
    bounded("huge announcement", &header, |i| {
        let mut reader = StreamReader::new(std::io::Cursor::new(i.to_vec()));
        reader.set_limits(Limits::DEFAULT);
        let err = rt.block_on(reader.recv()).unwrap_err();
        assert!(matches!(err, CommError::Truncated), "{err}");
    });
    // Sixteen million frames announced in eight bytes.
    let mut header = Vec::new();
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&Limits::DEFAULT.max_frames.to_le_bytes());
    bounded("many frames", &header, |i| {
        let mut reader = StreamReader::new(std::io::Cursor::new(i.to_vec()));
        reader.set_limits(Limits::DEFAULT);
        assert!(rt.block_on(reader.recv()).is_err());
    });
}

fn decoder_target<T: serde::de::DeserializeOwned>(name: &str, seed: u64, seeds: Vec<Vec<u8>>) {
    fuzz::run(name, seed, &seeds, |input| {
        bounded(name, input, |i| {
            let raw = RawMessage {
                control: Bytes::copy_from_slice(i),
                frames: vec![],
            };
            let _ = raw.decode::<T>();
        })
    });
}

#[test]
fn fuzz_from_client_decoder() {
    decoder_target::<FromClient>("decode-from-client", 21, encoded(&from_client()));
}

#[test]
fn fuzz_from_worker_decoder() {
    decoder_target::<FromWorker>("decode-from-worker", 22, encoded(&from_worker()));
}

#[test]
fn fuzz_to_worker_decoder() {
    decoder_target::<ToWorker>("decode-to-worker", 23, encoded(&to_worker()));
}

#[test]
fn fuzz_to_client_decoder() {
    decoder_target::<ToClient>("decode-to-client", 24, encoded(&to_client()));
}

#[test]
fn fuzz_data_request_and_reply_decoders() {
    decoder_target::<DataRequest>(
        "decode-data-request",
        25,
        encoded(&[DataRequest::Get(vec![TaskId(1), TaskId(2)])]),
    );
    decoder_target::<DataReply>(
        "decode-data-reply",
        26,
        encoded(&[DataReply {
            found: vec![(TaskId(1), 0)],
            missing: vec![TaskId(2)],
        }]),
    );
}

/// Forwards messages and keeps their wire bytes.
struct Recorder<W> {
    inner: W,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<W: MessageWrite> MessageWrite for Recorder<W> {
    async fn send(&mut self, msg: &RawMessage) -> Result<(), CommError> {
        self.seen
            .lock()
            .unwrap()
            .extend_from_slice(&wire(std::slice::from_ref(msg)));
        self.inner.send(msg).await
    }
    async fn flush(&mut self) -> Result<(), CommError> {
        self.inner.flush().await
    }
}

/// What each side of a real handshake sent: (acceptor's bytes, connector's bytes).
fn handshake_transcript(rt: &tokio::runtime::Runtime, secret: &Secret) -> (Vec<u8>, Vec<u8>) {
    let (a_w, b_r) = tokio::io::duplex(1 << 16);
    let (b_w, a_r) = tokio::io::duplex(1 << 16);
    let acceptor_sent = Arc::new(Mutex::new(Vec::new()));
    let connector_sent = Arc::new(Mutex::new(Vec::new()));
    let mut ar = StreamReader::new(a_r);
    let mut aw = Recorder {
        inner: StreamWriter::new(a_w),
        seen: acceptor_sent.clone(),
    };
    let mut br = StreamReader::new(b_r);
    let mut bw = Recorder {
        inner: StreamWriter::new(b_w),
        seen: connector_sent.clone(),
    };
    let t = Duration::from_secs(5);
    rt.block_on(async {
        let (a, c) = tokio::join!(
            auth::accept(&mut ar, &mut aw, secret, "Scheduler-x", t),
            auth::connect(&mut br, &mut bw, secret, Role::Worker, "w", t)
        );
        a.unwrap();
        c.unwrap();
    });
    let a = acceptor_sent.lock().unwrap().clone();
    let c = connector_sent.lock().unwrap().clone();
    (a, c)
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn fuzz_handshake_acceptor() {
    let rt = runtime();
    let secret = Secret::random();
    let (_, connector) = handshake_transcript(&rt, &secret);
    fuzz::run("handshake-acceptor", 31, &[connector], |input| {
        bounded("handshake acceptor", input, |i| {
            let mut reader = StreamReader::new(std::io::Cursor::new(i.to_vec()));
            let mut writer = StreamWriter::new(tokio::io::sink());
            let result = rt.block_on(auth::accept(
                &mut reader,
                &mut writer,
                &secret,
                "Scheduler-x",
                HANDSHAKE_TIMEOUT,
            ));
            // Our nonce is new each time: a recorded or mutated response never passes.
            assert!(result.is_err(), "a replayed response was accepted");
            assert!(
                !matches!(result, Err(CommError::HandshakeTimeout(_))),
                "the acceptor hung"
            );
        })
    });
}

#[test]
fn fuzz_handshake_connector() {
    let rt = runtime();
    let secret = Secret::random();
    let (acceptor, _) = handshake_transcript(&rt, &secret);
    fuzz::run("handshake-connector", 32, &[acceptor], |input| {
        bounded("handshake connector", input, |i| {
            let mut reader = StreamReader::new(std::io::Cursor::new(i.to_vec()));
            let mut writer = StreamWriter::new(tokio::io::sink());
            let result = rt.block_on(auth::connect(
                &mut reader,
                &mut writer,
                &secret,
                Role::Client,
                "c",
                HANDSHAKE_TIMEOUT,
            ));
            assert!(result.is_err(), "a replayed challenge and accept passed");
            assert!(
                !matches!(result, Err(CommError::HandshakeTimeout(_))),
                "the connector hung"
            );
        })
    });
}
