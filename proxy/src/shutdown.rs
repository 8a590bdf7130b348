//! Signals: SIGHUP reloads (so does a changed auth file), SIGTERM/SIGINT
//! drain. Listeners stop first,
//! clients finish their transaction (bounded by `shutdown_timeout`), pools
//! close last.

use crate::app::App;
use crate::auth::AuthFile;
use crate::config;
use crate::listener::ClientSlots;
use std::path::Path;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::task::TaskTracker;

/// Waits for signals until a drain is asked, reloading on SIGHUP.
pub async fn wait_for_drain(
    app: &App,
    config_path: &Path,
    slots: &ClientSlots,
) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut asked = app.take_reload_requests();
    let mut seen = auth_file_digest(&app.config.load());
    loop {
        let every = app.config.load().auth_file_reload_interval;
        let check = async {
            if every.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(every).await
            }
        };
        tokio::select! {
            _ = hup.recv() => { let _ = reload(app, config_path, slots); }
            Some(reply) = async { asked.as_mut()?.recv().await } => {
                let _ = reply.send(reload(app, config_path, slots));
            }
            _ = check => {
                let now = auth_file_digest(&app.config.load());
                if now != seen {
                    tracing::info!("auth_file changed: reloading");
                    let _ = reload(app, config_path, slots);
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); return Ok(()) }
            _ = app.shutdown.cancelled() => { tracing::info!("SHUTDOWN: draining"); return Ok(()) }
        }
        // Whatever reloaded (or did not), the file as it is now is the
        // one seen: a failed reload is not retried until it changes again.
        seen = auth_file_digest(&app.config.load());
    }
}

/// A fingerprint of the auth file's bytes (None: unset or unreadable). A
/// mounted Secret is replaced by a symlink swap, so the bytes are compared,
/// not the modification time of the path.
fn auth_file_digest(cfg: &config::Config) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(cfg.auth_file.as_ref()?).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Re-reads the config and auth file; on any error the old ones stay.
pub fn reload(app: &App, config_path: &Path, slots: &ClientSlots) -> Result<(), String> {
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "reload failed, keeping the running config");
            return Err(e.to_string());
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let auth = match load_auth(&loaded.config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "reload failed, keeping the running config");
            return Err(e.to_string());
        }
    };
    let tls = match crate::tls::TlsSetup::load(&loaded.config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "reload failed, keeping the running config");
            return Err(e.to_string());
        }
    };
    let old_listen = app.config.load().listen.clone();
    if old_listen != loaded.config.listen {
        tracing::warn!("listen changed: takes effect on restart only");
    }
    if app.config.load().worker_threads != loaded.config.worker_threads {
        tracing::warn!("worker_threads changed: takes effect on restart only");
    }
    slots.resize(loaded.config.max_client_conn);
    // Before the pools are updated: their server targets take it from here.
    app.tls.store(Arc::new(tls));
    app.reload(loaded.config, auth);
    tracing::info!("configuration reloaded");
    Ok(())
}

pub fn load_auth(cfg: &config::Config) -> Result<AuthFile, crate::auth::AuthFileError> {
    let mut auth = match &cfg.auth_file {
        Some(p) => AuthFile::load(p)?,
        None => AuthFile::default(),
    };
    if let Some(p) = &cfg.auth_hba_file {
        auth.hba = Some(crate::auth::hba::Hba::load(p)?);
    }
    Ok(auth)
}

/// Stops accepting, lets clients finish, then closes pools.
pub async fn drain(app: Arc<App>, tracker: TaskTracker) {
    let timeout = app.config.load().shutdown_timeout;
    app.begin_shutdown();
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown_timeout reached, closing remaining clients"
        );
    }
    for pool in app.pools() {
        pool.close_idle();
    }
    tracing::info!("shut down");
}
