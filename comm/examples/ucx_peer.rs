//! Two processes over the UCX transport (the `ucx_transport` tests run it; `UCX_TLS`
//! chooses UCX's transports as usual).
//!
//! - `ucx_peer echo`: print `address ucx://...`, then echo every message of every
//!   connection back on it.
//! - `ucx_peer stream`: print the address; on each connection, after its first message,
//!   send 16 MiB messages without end.
//! - `ucx_peer check ADDRESS [ROUNDS]`: connect to an echo peer, send messages with frames
//!   of 0, 1, 4093 bytes, 1 MiB and 64 MiB + 3 (a position-dependent pattern), each
//!   followed by a one-frame small message in the same flush, and check every echo byte
//!   for byte and in order. Prints one JSON line; exits 1 on a mismatch.
//! - `ucx_peer drain ADDRESS`: connect to a stream peer, ask, and read; prints `got N` per
//!   message, then `error: ...` (exit 3) or `closed` (exit 4) when the stream ends.

use bytes::Bytes;
use shoal_comm::transport::ucx::UcxFabric;
use shoal_comm::transport::{address, MessageRead, MessageWrite, Service};
use shoal_comm::{Limits, RawMessage};
use std::io::Write;
use std::time::Instant;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn peer_address(text: Option<&String>) -> anyhow::Result<Vec<u8>> {
    let text = text.ok_or_else(|| anyhow::anyhow!("give the peer's ucx:// address"))?;
    address::ucx_alternative(text).ok_or_else(|| anyhow::anyhow!("{text:?} is no ucx:// address"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fabric = UcxFabric::start()?;
    match args.first().map(String::as_str) {
        Some(mode @ ("echo" | "stream")) => {
            let stream = mode == "stream";
            let mut listener = fabric.listen(Service::Data);
            println!("address {}", fabric.address());
            std::io::stdout().flush()?;
            while let Some((mut reader, mut writer, _)) = listener.accept().await {
                reader.set_limits(Limits::DEFAULT);
                tokio::spawn(async move {
                    while let Ok(Some(msg)) = reader.recv().await {
                        if stream {
                            let big = RawMessage::encode(&"stream", vec![pattern(16 << 20, 3)])?;
                            loop {
                                writer.send(&big).await?;
                                writer.flush().await?;
                            }
                        }
                        writer.send(&msg).await?;
                        writer.flush().await?;
                    }
                    Ok::<_, anyhow::Error>(())
                });
            }
        }
        Some("check") => {
            let peer = peer_address(args.get(1))?;
            let rounds: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2);
            let (mut reader, mut writer) = fabric.connect(&peer, Service::Data)?;
            reader.set_limits(Limits::DEFAULT);
            let sizes = [0, 1, 4093, 1 << 20, (64 << 20) + 3];
            let mut checked = 0u64;
            let mut best = f64::MAX;
            for round in 0..rounds {
                let frames: Vec<Bytes> = sizes.iter().map(|&n| pattern(n, round as u8)).collect();
                let msg = RawMessage::encode(&("echo", round), frames.clone())?;
                let small = RawMessage::encode(&("small", round), vec![pattern(7, 1)])?;
                let start = Instant::now();
                writer.send(&msg).await?;
                writer.send(&small).await?;
                writer.flush().await?;
                let echo = reader
                    .recv()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("closed"))?;
                let second = reader
                    .recv()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("closed"))?;
                best = best.min(start.elapsed().as_secs_f64());
                anyhow::ensure!(
                    echo.decode::<(String, usize)>()? == ("echo".into(), round),
                    "round {round}: the large message did not come back first"
                );
                anyhow::ensure!(echo.frames.len() == sizes.len(), "frames lost");
                for (got, sent) in echo.frames.iter().zip(&frames) {
                    anyhow::ensure!(got == sent, "a frame of {} bytes differs", sent.len());
                    checked += sent.len() as u64;
                }
                anyhow::ensure!(
                    second.decode::<(String, usize)>()? == ("small".into(), round)
                        && second.frames == vec![pattern(7, 1)],
                    "round {round}: the small message was not second or differs"
                );
            }
            // Every size as a message of its own, in one flush: order and content.
            for &n in &sizes {
                writer
                    .send(&RawMessage::encode(&n, vec![pattern(n, 9)])?)
                    .await?;
            }
            writer.flush().await?;
            for &n in &sizes {
                let got = reader
                    .recv()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("closed"))?;
                anyhow::ensure!(got.decode::<usize>()? == n, "messages out of order");
                anyhow::ensure!(got.frames == vec![pattern(n, 9)], "{n} bytes differ");
                checked += n as u64;
            }
            let frames: Vec<String> = sizes.iter().map(usize::to_string).collect();
            println!(
                "{{\"ok\": true, \"rounds\": {rounds}, \"frames\": [{}], \"bytes_checked\": {checked}, \"best_round_trip_s\": {best:.6}}}",
                frames.join(", ")
            );
        }
        Some("drain") => {
            let peer = peer_address(args.get(1))?;
            let (mut reader, mut writer) = fabric.connect(&peer, Service::Data)?;
            reader.set_limits(Limits::DEFAULT);
            writer.send(&RawMessage::encode(&"go", vec![])?).await?;
            writer.flush().await?;
            loop {
                match reader.recv().await {
                    Ok(Some(msg)) => {
                        println!("got {}", msg.frames.iter().map(Bytes::len).sum::<usize>());
                        std::io::stdout().flush()?;
                    }
                    Ok(None) => {
                        println!("closed");
                        std::process::exit(4);
                    }
                    Err(e) => {
                        println!("error: {e}");
                        std::process::exit(3);
                    }
                }
            }
        }
        _ => {
            anyhow::bail!("usage: ucx_peer echo | stream | check ADDRESS [ROUNDS] | drain ADDRESS")
        }
    }
    Ok(())
}
