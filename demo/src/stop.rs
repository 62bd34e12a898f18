//! Ctrl-C, SIGTERM and SIGHUP become a flag the demo checks between and
//! inside its steps, so every exit runs the same teardown (agents stopped,
//! namespaces deleted) instead of the default "die where you stand".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

/// How often a waiting step looks at the flag: Ctrl-C is answered within it.
const SLICE: Duration = Duration::from_millis(20);

/// The demo was asked to stop by a signal; it cleaned up and exits 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {signal}: stopped the agents and removed the namespaces")]
pub struct Interrupted {
    /// `SIGINT`, `SIGTERM` or `SIGHUP`.
    pub signal: &'static str,
}

/// Whether a stop was requested, shared with the signal thread.
#[derive(Debug, Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    which: Arc<std::sync::OnceLock<&'static str>>,
}

impl Stop {
    /// Installs the handlers on a thread of their own (a small tokio
    /// runtime: tokio is already in the binary) and returns once they are
    /// in place, so no signal can slip through before the first step.
    pub fn install() -> anyhow::Result<Self> {
        let stop = Self {
            flag: Arc::new(AtomicBool::new(false)),
            which: Arc::new(std::sync::OnceLock::new()),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let shared = stop.clone();
        std::thread::Builder::new()
            .name("demo-signals".into())
            .spawn(move || shared.watch(&ready_tx))
            .context("starting the signal thread")?;
        ready_rx
            .recv()
            .context("the signal thread ended before installing its handlers")?
            .context("installing the SIGINT/SIGTERM/SIGHUP handlers")?;
        Ok(stop)
    }

    /// Err if a stop was requested.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.flag.load(Ordering::SeqCst) {
            return Err(Interrupted {
                signal: self.which.get().copied().unwrap_or("a signal"),
            });
        }
        Ok(())
    }

    /// Sleeps `d`, waking early (with Err) when a stop is requested.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupted> {
        let deadline = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep(SLICE.min(deadline - now));
        }
    }

    /// Body of the signal thread.
    fn watch(self, ready: &mpsc::Sender<std::io::Result<()>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        runtime.block_on(async {
            let handlers = (|| {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ))
            })();
            let (mut int, mut term, mut hup) = match handlers {
                Ok(h) => h,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            loop {
                let which = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                };
                let _ = self.which.set(which);
                self.flag.store(true, Ordering::SeqCst);
                eprintln!("von-demo: {which}: cleaning up (stopping agents, removing namespaces)");
            }
        });
    }

    /// A stop that no signal can set, for unit tests of the waiting logic.
    #[cfg(test)]
    fn detached() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            which: Arc::new(std::sync::OnceLock::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_returns_early_once_stopped() {
        let stop = Stop::detached();
        assert!(stop.sleep(Duration::from_millis(30)).is_ok());
        let setter = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let _ = setter.which.set("SIGINT");
            setter.flag.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let err = stop.sleep(Duration::from_secs(30)).expect_err("stopped");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.signal, "SIGINT");
        t.join().expect("setter thread");
        assert!(stop.check().is_err());
    }
}
