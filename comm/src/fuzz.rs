//! A small seeded mutation fuzzer for the code that reads bytes from the network (the
//! frame parser, the control-message decoders, the handshake, the MPI first-message
//! splitter) and the files peers hand around (scheduler files, graph JSON). `cargo fuzz`
//! needs a nightly compiler; this runs in the ordinary test suite.
//!
//! [`run`] takes valid inputs as seeds and feeds a target mutated copies of them: bit
//! flips, byte and integer substitutions at interesting values (0, 1, 0x7f, 0xff,
//! `u32::MAX`, ...), insertions, deletions, duplicated or swapped slices, splices of two
//! seeds, and truncations. The run is deterministic for a seed; the count comes from
//! `SHOAL_FUZZ_INPUTS` (default [`DEFAULT_INPUTS`]), so `scripts/fuzz` can run 10^6 per
//! target. A target must return normally for every input: a panic names the target, the
//! input number and the input in hex.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs per target in the ordinary test suite.
pub const DEFAULT_INPUTS: u64 = 3000;

/// Inputs per target: `SHOAL_FUZZ_INPUTS`, else [`DEFAULT_INPUTS`].
pub fn inputs() -> u64 {
    std::env::var("SHOAL_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_INPUTS)
}

/// Values that break length and index arithmetic.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 2,
    u64::MAX,
];

/// One mutated copy of a seed (sometimes spliced with another).
pub fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.gen_range(0..seeds.len())].clone();
    let rounds = 1 + rng.gen_range(0..4);
    for _ in 0..rounds {
        mutate_once(rng, &mut data, seeds);
    }
    data
}

fn mutate_once(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    let at = |rng: &mut StdRng, extra: usize| rng.gen_range(0..len + extra);
    match rng.gen_range(0..10) {
        0 if len > 0 => {
            let i = at(rng, 0);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng, 0);
            data[i] = rng.gen();
        }
        2 if len > 0 => {
            // An interesting integer, little- or big-endian, of 1, 2, 4 or 8 bytes.
            let width = [1usize, 2, 4, 8][rng.gen_range(0..4)];
            let value = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            let bytes = if rng.gen() {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let i = at(rng, 0);
            let bytes: Vec<u8> = if rng.gen() {
                bytes[..width].to_vec()
            } else {
                bytes[8 - width..].to_vec()
            };
            for (k, b) in bytes.into_iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = b;
                }
            }
        }
        3 => {
            let i = at(rng, 1);
            let n = rng.gen_range(1..16);
            let fill: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(i..i, fill);
        }
        4 if len > 0 => {
            let i = at(rng, 0);
            let n = rng.gen_range(1..=(len - i).min(32));
            data.drain(i..i + n);
        }
        5 if len > 0 => {
            // Duplicate a slice (repeated structures, long arrays).
            let i = at(rng, 0);
            let n = rng.gen_range(1..=(len - i).min(64));
            let piece = data[i..i + n].to_vec();
            let times = rng.gen_range(1..8);
            let j = at(rng, 1);
            for _ in 0..times {
                data.splice(j..j, piece.iter().copied());
            }
        }
        6 if len > 1 => {
            let (i, j) = (at(rng, 0), at(rng, 0));
            data.swap(i, j);
        }
        7 => {
            // Splice: the front of this input, the back of another seed.
            let other = &seeds[rng.gen_range(0..seeds.len())];
            let i = at(rng, 1);
            let j = rng.gen_range(0..other.len() + 1);
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        8 if len > 0 => data.truncate(at(rng, 0)),
        _ => {
            if let Some(b) = data.last_mut() {
                *b = b.wrapping_add(1);
            } else {
                data.push(rng.gen());
            }
        }
    }
}

/// Feed `target` the seeds and then `inputs()` mutated inputs; prints the count.
/// Returns the number of inputs run.
///
/// # Panics
/// When `target` panics: the message names the target, the input number and the input.
pub fn run(name: &str, seed: u64, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) -> u64 {
    assert!(!seeds.is_empty(), "fuzz target {name} needs seeds");
    let total = inputs();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = 0u64;
    for s in seeds {
        check(name, run, s, &mut target);
        run += 1;
    }
    while run < total {
        let input = mutate(&mut rng, seeds);
        check(name, run, &input, &mut target);
        run += 1;
    }
    println!("fuzz {name}: {run} inputs");
    run
}

fn check(name: &str, n: u64, input: &[u8], target: &mut impl FnMut(&[u8])) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(input)));
    if let Err(e) = result {
        let what = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let shown: String = input.iter().take(512).map(|b| format!("{b:02x}")).collect();
        panic!(
            "fuzz target {name} failed on input {n} ({} bytes): {what}\ninput: {shown}",
            input.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_vary() {
        let seeds = vec![b"hello world".to_vec(), vec![1, 2, 3]];
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let xs: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut a, &seeds)).collect();
        let ys: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut b, &seeds)).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::BTreeSet<_> = xs.iter().collect();
        assert!(distinct.len() > 30, "{}", distinct.len());
    }

    #[test]
    fn a_failing_target_is_reported_with_its_input() {
        let seeds = vec![vec![0u8; 4]];
        let err = std::panic::catch_unwind(|| {
            run("boom", 1, &seeds, |i| assert!(i.len() < 4, "too long"));
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("fuzz target boom failed on input 0") && msg.contains("00000000"),
            "{msg}"
        );
    }
}
