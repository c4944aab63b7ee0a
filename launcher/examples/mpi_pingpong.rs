//! Raw MPI ping-pong of one message size between ranks 0 and 1: the ceiling any transport
//! over MPI can reach here. `mpirun -np 2 mpi_pingpong [MiB] [ROUNDS]`; rank 0 prints JSON.

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use std::time::Instant;

fn main() {
    let universe = mpi::initialize().expect("MPI initialises once");
    let world = universe.world();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut buf = vec![7u8; mib << 20];
    let peer = 1 - world.rank();
    let other = world.process_at_rank(peer);
    let start = Instant::now();
    for _ in 0..rounds {
        if world.rank() == 0 {
            other.send(&buf[..]);
            other.receive_into(&mut buf[..]);
        } else {
            other.receive_into(&mut buf[..]);
            other.send(&buf[..]);
        }
    }
    let one_way = start.elapsed().as_secs_f64() / (2 * rounds) as f64;
    if world.rank() == 0 {
        println!(
            "{{\"mib\": {mib}, \"seconds\": {one_way:.5}, \"gb_per_s\": {:.2}}}",
            buf.len() as f64 / one_way / 1e9
        );
    }
}
