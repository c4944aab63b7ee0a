//! Built-in executors: no-op, sleep, produce bytes, concatenate, sum, fail.
//!
//! Payloads are msgpack maps of the arguments below; `shoal run` writes them from JSON.

use super::pool::Job;
use crate::worker::store::Value;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use shoal_comm::message::{ExecutorKind, TaskError, TaskErrorKind};

/// Arguments of [`ExecutorKind::Sleep`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

/// Arguments of [`ExecutorKind::Bytes`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BytesArgs {
    /// Length of the result in bytes.
    pub size: u64,
    /// The value of every byte (the seed of the pattern with `pattern`).
    #[serde(default)]
    pub fill: u8,
    /// Instead of `fill` everywhere, byte `i` is [`pattern_byte`]`(i, fill)`: any byte
    /// lost, added or moved in transit shows.
    #[serde(default)]
    pub pattern: bool,
}

/// Byte `i` of a patterned [`BytesArgs`] payload seeded with `seed`: differs between
/// neighbours and between 2 KiB blocks, so shifted or swapped pieces do not match.
pub fn pattern_byte(i: u64, seed: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8
}

/// Arguments of [`ExecutorKind::Sum`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SumArgs {
    /// Added to the sum of the inputs.
    #[serde(default)]
    pub add: u64,
    /// Sleep this long first (slow tasks with checkable results, for tests).
    #[serde(default)]
    pub sleep_ms: u64,
}

/// Arguments of [`ExecutorKind::Fail`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailArgs {
    /// The task error's message.
    pub message: String,
}

/// Encode built-in arguments as a payload.
pub fn encode_args<T: Serialize>(args: &T) -> Bytes {
    rmp_serde::to_vec_named(args)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// The kinds this module runs.
pub const KINDS: &[ExecutorKind] = &[
    ExecutorKind::Noop,
    ExecutorKind::Sleep,
    ExecutorKind::Bytes,
    ExecutorKind::Concat,
    ExecutorKind::Sum,
    ExecutorKind::Fail,
    ExecutorKind::Checksum,
];

fn error(kind: TaskErrorKind, message: String) -> TaskError {
    TaskError {
        key: String::new(),
        kind,
        message,
        traceback: None,
        exception: Vec::new(),
    }
}

fn args<'a, T: Default + Deserialize<'a>>(
    kind: ExecutorKind,
    payload: Option<&'a [u8]>,
) -> Result<T, TaskError> {
    match payload {
        None => Ok(T::default()),
        Some(p) => rmp_serde::from_slice(p).map_err(|e| {
            error(
                TaskErrorKind::BadPayload,
                format!("the payload of a {kind:?} task does not decode: {e}"),
            )
        }),
    }
}

/// Run a built-in job: inputs in their wire form, the result as bytes.
///
/// # Errors
/// As [`run`]; an input that cannot be encoded.
pub fn run_job(job: &Job) -> Result<Value, TaskError> {
    let inputs = job
        .inputs
        .iter()
        .map(Value::to_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            error(
                TaskErrorKind::TaskFailed,
                format!("an input cannot be encoded: {e}"),
            )
        })?;
    run(job.kind, job.payload.as_deref(), &inputs).map(Value::Bytes)
}

/// Run a built-in task.
///
/// # Errors
/// A `fail` task, a payload that does not decode, an input of the wrong size for `sum`,
/// or a kind this module does not run.
pub fn run(
    kind: ExecutorKind,
    payload: Option<&[u8]>,
    inputs: &[Bytes],
) -> Result<Bytes, TaskError> {
    match kind {
        ExecutorKind::Noop => Ok(Bytes::new()),
        ExecutorKind::Sleep => {
            let a: SleepArgs = args(kind, payload)?;
            std::thread::sleep(std::time::Duration::from_millis(a.ms));
            Ok(Bytes::new())
        }
        ExecutorKind::Bytes => {
            let a: BytesArgs = args(kind, payload)?;
            let size = usize::try_from(a.size).map_err(|_| {
                error(
                    TaskErrorKind::BadPayload,
                    format!("cannot produce {} bytes on this machine", a.size),
                )
            })?;
            // A size from the graph: memory that cannot be had fails the task instead of
            // aborting the worker.
            let mut out = Vec::new();
            out.try_reserve_exact(size).map_err(|_| {
                error(
                    TaskErrorKind::MemoryError,
                    format!("cannot allocate {} bytes for the result", a.size),
                )
            })?;
            if a.pattern {
                out.extend((0..a.size).map(|i| pattern_byte(i, a.fill)));
            } else {
                out.resize(size, a.fill);
            }
            Ok(Bytes::from(out))
        }
        ExecutorKind::Checksum => {
            let total = inputs
                .iter()
                .flat_map(|i| i.iter())
                .fold(0u64, |sum, b| sum.wrapping_add(u64::from(*b)));
            Ok(Bytes::copy_from_slice(&total.to_le_bytes()))
        }
        // One input is the result as it is: no copy.
        ExecutorKind::Concat if inputs.len() == 1 => Ok(inputs[0].clone()),
        ExecutorKind::Concat => {
            let mut out = BytesMut::with_capacity(inputs.iter().map(Bytes::len).sum());
            for i in inputs {
                out.extend_from_slice(i);
            }
            Ok(out.freeze())
        }
        ExecutorKind::Sum => {
            let a: SumArgs = args(kind, payload)?;
            if a.sleep_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(a.sleep_ms));
            }
            let mut total = a.add;
            for (n, input) in inputs.iter().enumerate() {
                let bytes: [u8; 8] = input.as_ref().try_into().map_err(|_| {
                    error(TaskErrorKind::TaskFailed, format!("input {n} of a sum task is {} bytes, expected an 8-byte little-endian integer", input.len()))
                })?;
                total = total.wrapping_add(u64::from_le_bytes(bytes));
            }
            Ok(Bytes::copy_from_slice(&total.to_le_bytes()))
        }
        ExecutorKind::Fail => {
            let a: FailArgs = args(kind, payload)?;
            Err(error(TaskErrorKind::TaskFailed, a.message))
        }
        ExecutorKind::Python => Err(error(
            TaskErrorKind::Unsupported,
            "this worker cannot run Python tasks: it is the Rust `shoal` binary".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> Bytes {
        Bytes::copy_from_slice(&v.to_le_bytes())
    }

    #[test]
    fn sum_adds_inputs_and_constant() {
        let out = run(
            ExecutorKind::Sum,
            Some(&encode_args(&SumArgs {
                add: 5,
                sleep_ms: 0,
            })),
            &[n(1), n(2)],
        )
        .unwrap();
        assert_eq!(out, n(8));
        let err = run(ExecutorKind::Sum, None, &[Bytes::from_static(b"abc")]).unwrap_err();
        assert!(
            err.message.contains("input 0 of a sum task is 3 bytes"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_result_too_large_for_memory_fails_the_task() {
        let payload = encode_args(&BytesArgs {
            size: 1 << 62,
            ..BytesArgs::default()
        });
        let err = run(ExecutorKind::Bytes, Some(&payload), &[]).unwrap_err();
        assert_eq!(err.kind, TaskErrorKind::MemoryError);
        assert!(
            err.message.contains(&(1u64 << 62).to_string()),
            "{}",
            err.message
        );
    }

    #[test]
    fn bytes_concat_and_fail() {
        let b = run(
            ExecutorKind::Bytes,
            Some(&encode_args(&BytesArgs {
                size: 3,
                fill: 7,
                pattern: false,
            })),
            &[],
        )
        .unwrap();
        assert_eq!(&b[..], &[7, 7, 7]);
        let c = run(
            ExecutorKind::Concat,
            None,
            &[b.clone(), Bytes::from_static(b"x")],
        )
        .unwrap();
        assert_eq!(&c[..], &[7, 7, 7, b'x']);
        let e = run(
            ExecutorKind::Fail,
            Some(&encode_args(&FailArgs {
                message: "no".into(),
            })),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.message, "no");
        let p = run(ExecutorKind::Python, None, &[]).unwrap_err();
        assert_eq!(p.kind, TaskErrorKind::Unsupported);
        let bad = run(ExecutorKind::Sleep, Some(b"\xc1"), &[]).unwrap_err();
        assert_eq!(bad.kind, TaskErrorKind::BadPayload);
    }
}
