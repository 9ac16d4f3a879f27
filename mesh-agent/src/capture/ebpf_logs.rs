//! Forwards aya-log records from the eBPF programs into `tracing`
//! (via the `log` bridge) whenever the ring buffer becomes readable.
use aya_log::EbpfLogger;
use tokio::io::{unix::AsyncFd, Interest};

pub async fn forward(logger: EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: `EbpfLogger::as_raw_fd` returns the ring buffer's fd, which the
    // logger owns; the AsyncFd takes ownership of the logger, so the fd stays
    // open and unchanged for as long as it is registered.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(error) => {
            tracing::warn!(error = %error, "cannot poll eBPF logs");
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
