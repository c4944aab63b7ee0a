//! Pickles of plain values written directly: ints that fit 64 bits, floats, strings,
//! bytes, booleans, `None`, and tuples of them (a call's arguments), as `pickle.loads`
//! reads them (protocol 2 opcodes under a protocol 5 header, no memo).
//!
//! `pickle.dumps` costs about 0.4 us per call here, most of it making a pickler; `map`
//! and graph submission pickle one small argument tuple per task. The values are Python
//! objects already, so the opcodes are written from them; anything else returns `None`
//! and goes through `pickle.dumps`.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString, PyTuple};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const TRUE: u8 = 0x88;
const FALSE: u8 = 0x89;
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const EMPTY_TUPLE: u8 = b')';
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const TUPLE_N: [u8; 3] = [0x85, 0x86, 0x87];

/// The pickle of `obj`, or `None` when it is not a plain value or a tuple of them.
pub fn dumps(obj: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&[PROTO, 5]);
    if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        if tuple.len() <= TUPLE_N.len() {
            for item in tuple.iter() {
                value(&item, &mut out)?;
            }
            out.push(match tuple.len() {
                0 => EMPTY_TUPLE,
                n => TUPLE_N[n - 1],
            });
        } else {
            out.push(MARK);
            for item in tuple.iter() {
                value(&item, &mut out)?;
            }
            out.push(TUPLE);
        }
    } else {
        value(obj, &mut out)?;
    }
    out.push(STOP);
    Some(out)
}

/// Appends the opcodes of one plain value; `None` for any other object.
fn value(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Option<()> {
    if obj.is_none() {
        out.push(NONE);
    } else if obj.is_exact_instance_of::<PyBool>() {
        out.push(if obj.is_truthy().ok()? { TRUE } else { FALSE });
    } else if obj.is_exact_instance_of::<PyInt>() {
        int(obj.extract::<i64>().ok()?, out);
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        out.push(BINFLOAT);
        out.extend_from_slice(&f.value().to_be_bytes());
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        // Strings with lone surrogates have no UTF-8 form: pickle.dumps escapes them.
        let text = s.to_cow().ok()?;
        sized(text.as_bytes(), SHORT_BINUNICODE, BINUNICODE, out)?;
    } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
        sized(b.as_bytes(), SHORT_BINBYTES, BINBYTES, out)?;
    } else {
        return None;
    }
    Some(())
}

fn int(v: i64, out: &mut Vec<u8>) {
    if let Ok(small) = u8::try_from(v) {
        out.extend_from_slice(&[BININT1, small]);
    } else if let Ok(short) = u16::try_from(v) {
        out.push(BININT2);
        out.extend_from_slice(&short.to_le_bytes());
    } else if let Ok(word) = i32::try_from(v) {
        out.push(BININT);
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        // Little-endian two's complement, shortest form (LONG1 reads the sign from the
        // top bit of the last byte).
        let bytes = v.to_le_bytes();
        let mut n = bytes.len();
        while n > 1 {
            let (last, next) = (bytes[n - 1], bytes[n - 2]);
            let redundant = (last == 0 && next & 0x80 == 0) || (last == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            n -= 1;
        }
        out.extend_from_slice(&[LONG1, n as u8]);
        out.extend_from_slice(&bytes[..n]);
    }
}

/// A length-prefixed string or bytes: the short opcode below 256 bytes, else the long one.
fn sized(data: &[u8], short: u8, long: u8, out: &mut Vec<u8>) -> Option<()> {
    if let Ok(len) = u8::try_from(data.len()) {
        out.extend_from_slice(&[short, len]);
    } else {
        out.push(long);
        out.extend_from_slice(&u32::try_from(data.len()).ok()?.to_le_bytes());
    }
    out.extend_from_slice(data);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::int;

    fn long1(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        int(v, &mut out);
        out
    }

    #[test]
    fn ints_take_the_shortest_opcode_python_reads() {
        assert_eq!(long1(7), [b'K', 7]);
        assert_eq!(long1(300), [b'M', 0x2c, 0x01]);
        assert_eq!(long1(-1), [b'J', 0xff, 0xff, 0xff, 0xff]);
        // 2**31 needs a fifth byte so that its top bit is not read as the sign.
        assert_eq!(long1(1 << 31), [0x8a, 5, 0, 0, 0, 0x80, 0]);
        assert_eq!(
            long1(-(1 << 31) - 1),
            [0x8a, 5, 0xff, 0xff, 0xff, 0x7f, 0xff]
        );
        assert_eq!(long1(i64::MIN), [0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    }
}
