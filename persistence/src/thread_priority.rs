//! The scheduling priority of the SQLite writer threads.
//!
//! On two cores the journal's writer shares the CPU with the runtime's workers, the HTTP
//! workers and the read models' writer; each of its group commits waited for a time slice
//! behind them, so a commit that needs ~0.5 ms of CPU took 2–6 ms (median) of wall time, and
//! every order waits for two. Measured at 1 500 orders/s: the journal held its turn 98 % of the
//! time, the serial bottleneck of the node. So the journal's writer runs at a higher priority
//! (a lower nice value; refused without `CAP_SYS_NICE`, then it keeps the default) and the
//! read models' writer, whose work trails the log anyway, at a lower one (always allowed).

/// Sets the calling thread's nice value to `nice` (Linux: per thread); says in the log when
/// the system refuses it, and goes on at the default.
pub(crate) fn set_current_thread_nice(nice: i32, thread: &str) {
    if nice == 0 {
        return;
    }
    // On Linux a thread id given as the process of setpriority names that one thread.
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::info!(
            thread,
            nice,
            %error,
            "thread priority not changed (needs CAP_SYS_NICE to raise it)"
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
