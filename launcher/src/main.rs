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

/// mimalloc's `mi_option_purge_delay` (v2): milliseconds before freed memory goes back
/// to the system.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Workers watch their RSS to decide when to spill: memory they freed must leave the
    // process at once, not linger until the allocator's next purge.
    // SAFETY: setting an option before any allocation-heavy work has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    shoal_runtime::sys::set_memory_release_hook(release_freed_memory);
    shoal_launcher::main_with(std::env::args().collect(), shoal_launcher::Hooks::default())
}
