//! The `shoal` command (the pure-Rust build: built-in executors only).

use std::process::ExitCode;

// mimalloc: the scheduler allocates and frees millions of small task records; mimalloc is
// faster than glibc malloc for that, and `mi_collect` hands freed memory back to the system
// when the scheduler asks (after a large graph was added or freed).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn main() -> ExitCode {
    shoal_runtime::scheduler::server::set_memory_release_hook(release_freed_memory);
    shoal_launcher::main_with(std::env::args().collect(), shoal_launcher::Hooks::default())
}
