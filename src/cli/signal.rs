//! The signals that end a command: SIGINT (Ctrl-C) and SIGTERM (systemd, `kill`).

use std::time::Duration;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        // Without a SIGTERM handler, Ctrl-C still ends the command.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Resolves after `limit`, or on SIGINT or SIGTERM; without a limit only on a signal.
pub async fn shutdown_or_after(limit: Option<Duration>) {
    match limit {
        None => shutdown().await,
        Some(limit) => {
            tokio::select! {
                _ = tokio::time::sleep(limit) => {}
                _ = shutdown() => {}
            }
        }
    }
}
