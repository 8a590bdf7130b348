//! [`Interrupt`]: Ctrl-C and SIGTERM turn into a flag the harness polls.
//!
//! The harness's waits are short polling loops (children, ports, pgbench
//! runs), so a flag checked in each of them is enough: the loop kills what
//! it waits for and returns an error, and the servers are then stopped by
//! their `Drop` as the error unwinds `main`. Servers run in process groups
//! of their own, so a terminal's Ctrl-C reaches only the harness.

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Listen for SIGINT and SIGTERM on `rt`; the first one sets the flag.
    pub fn install(rt: &tokio::runtime::Runtime) -> Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        let stop = Interrupt::default();
        let flag = stop.flag.clone();
        let (mut int, mut term) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        rt.spawn(async move {
            for _ in 0..2 {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if flag.swap(true, Ordering::SeqCst) {
                    // A second signal: the user wants out now. Children die
                    // with us (parent-death signal); temp dirs stay behind.
                    eprintln!("[loadbench] second interrupt: exiting at once");
                    std::process::exit(130);
                }
                eprintln!("[loadbench] interrupted: stopping servers and cleaning up");
            }
        });
        Ok(stop)
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// `Err` once interrupted.
    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            bail!("interrupted");
        }
        Ok(())
    }
}
