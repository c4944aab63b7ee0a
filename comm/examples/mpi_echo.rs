//! The MPI transport between two ranks: rank 1 echoes every message back over an accepted
//! connection; rank 0 sends messages with frames of awkward sizes (empty, one byte, odd,
//! large) filled with a position-dependent pattern and checks each echo byte for byte.
//! Prints one JSON line on rank 0. Run under `mpirun -np 2`.
//!
//! `mpi_echo [LARGEST_MIB] [ROUNDS]`

use bytes::Bytes;
use mpi::raw::AsRaw;
use mpi::topology::Communicator;
use shoal_comm::transport::mpi::{MpiFabric, Service};
use shoal_comm::transport::{MessageRead, MessageWrite};
use shoal_comm::RawMessage;
use std::time::Instant;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let largest: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Multiple)
        .ok_or_else(|| anyhow::anyhow!("MPI already initialised"))?;
    let world = universe.world();
    anyhow::ensure!(world.size() == 2, "run with mpirun -np 2");
    let comm = world.duplicate();
    // SAFETY: MPI stays initialised until the fabric stopped; the duplicate is the fabric's.
    let fabric = unsafe { MpiFabric::start(comm.as_raw(), "echo".into()) }?;
    if world.rank() == 1 {
        let mut listener = fabric.listen(Service::Data);
        let (mut reader, mut writer, _) = listener
            .accept()
            .await
            .ok_or_else(|| anyhow::anyhow!("no connection"))?;
        reader.set_limits(shoal_comm::Limits::DEFAULT);
        while let Some(msg) = reader.recv().await? {
            writer.send(&msg).await?;
            writer.flush().await?;
        }
    } else {
        let (mut reader, mut writer) = fabric.connect(1, Service::Data);
        reader.set_limits(shoal_comm::Limits::DEFAULT);
        let sizes = [0, 1, 4093, 1 << 20, (largest << 20) + 3];
        let mut checked = 0u64;
        let mut best = f64::MAX;
        for round in 0..rounds {
            let frames: Vec<Bytes> = sizes.iter().map(|&n| pattern(n, round as u8)).collect();
            let msg = RawMessage::encode(&("echo", round), frames.clone())?;
            // Two messages back to back: the echo must keep their order.
            let small = RawMessage::encode(&("small", round), vec![pattern(7, 1)])?;
            let start = Instant::now();
            writer.send(&msg).await?;
            writer.send(&small).await?;
            writer.flush().await?;
            let back = reader
                .recv()
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed"))?;
            best = best.min(start.elapsed().as_secs_f64());
            let second = reader
                .recv()
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed"))?;
            anyhow::ensure!(back.decode::<(String, usize)>()? == ("echo".into(), round));
            anyhow::ensure!(back.frames == frames, "frames differ after the round trip");
            anyhow::ensure!(second == small, "the second message differs or came first");
            checked += frames.iter().map(|f| f.len() as u64).sum::<u64>();
        }
        drop(writer);
        let largest_bytes = ((largest << 20) + 3) as f64;
        println!(
            "{{\"checked_bytes\": {checked}, \"round_trip_seconds\": {best:.5}, \"gb_per_s_one_way\": {:.2}}}",
            2.0 * largest_bytes / best / 1e9
        );
    }
    fabric.stop();
    std::mem::forget(comm);
    Ok(())
}
