//! How a supervisor learns that a worker process it started has registered with the
//! scheduler: a pipe whose write end the child inherits (its number in
//! `SHOAL_READY_FD`). The child writes one byte once registered; end of file without
//! that byte means the child exited (or closed the pipe) before it ever registered. A
//! nanny passes the signal on once all of its own children have sent theirs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// The environment variable naming the inherited write end.
pub const READY_FD_ENV: &str = "SHOAL_READY_FD";

/// The supervisor's end of one child's pipe.
pub struct ReadyPipe {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

impl ReadyPipe {
    /// A new pipe, both ends closed on exec.
    ///
    /// # Errors
    /// `pipe2` failed (out of file descriptors).
    pub fn new() -> std::io::Result<ReadyPipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(ReadyPipe {
            read,
            write: Some(write),
        })
    }

    /// Let the child `command` inherit the write end, and tell it its number.
    pub fn attach(&self, command: &mut tokio::process::Command) {
        let Some(write) = &self.write else { return };
        let fd: RawFd = write.as_raw_fd();
        command.env(READY_FD_ENV, fd.to_string());
        // SAFETY: fcntl is async-signal-safe; it only clears close-on-exec on our fd.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// After the child was spawned: close this process's copy of the write end (so end
    /// of file comes when the child exits), and wait for the byte. True if the child
    /// registered; false if it exited, or closed the pipe, before.
    pub async fn registered(mut self) -> bool {
        drop(self.write.take());
        let mut file = File::from(self.read);
        tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            matches!(file.read(&mut byte), Ok(1))
        })
        .await
        .unwrap_or(false)
    }
}

/// The child's end: taken from the environment once, written once.
#[derive(Clone, Default)]
pub struct ReadySignal(Arc<Mutex<Option<File>>>);

impl ReadySignal {
    /// The write end named by `SHOAL_READY_FD`, if it is an open pipe (taken once per
    /// process); close-on-exec is set again so that this process's own children do not
    /// inherit it.
    pub fn from_env() -> ReadySignal {
        static TAKEN: std::sync::OnceLock<ReadySignal> = std::sync::OnceLock::new();
        TAKEN.get_or_init(Self::take_from_env).clone()
    }

    fn take_from_env() -> ReadySignal {
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok())
            .filter(|fd| *fd > 2 && is_pipe(*fd));
        let file = fd.map(|fd| {
            // SAFETY: the fd is open (fstat succeeded), a pipe, and was handed to this
            // process for this purpose alone; nothing else in the process owns it.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                File::from_raw_fd(fd)
            }
        });
        ReadySignal(Arc::new(Mutex::new(file)))
    }

    /// Say "registered" (the first call only) and close the pipe.
    pub fn send(&self) {
        let Ok(mut guard) = self.0.lock() else { return };
        if let Some(mut file) = guard.take() {
            let _ = file.write_all(b"R");
        }
    }
}

fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the zeroed struct and reads no user memory.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
    }
}
