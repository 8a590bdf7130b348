//! How a session ends: the server connection settled (kept when clean,
//! closed when its state is unknown), and the client told why.

use super::Session;
use crate::client::pump::{Outcome, Track};
use crate::client::send_error;
use crate::pool::Lease;
use crate::protocol::backend::Severity;

impl Session {
    /// The session ends: settle the server, tell the client why.
    pub(super) async fn end(&mut self, outcome: Outcome, lease: Lease, track: &Track) -> bool {
        use Outcome::*;
        match outcome {
            Released => unreachable!("handled by finish"),
            ClientClosed => {
                self.give_back(lease, track).await;
                false
            }
            ClientIo(e) => {
                tracing::debug!(db = %self.db(), user = %self.user(), error = %e, "client socket error");
                self.give_back(lease, track).await;
                false
            }
            Shutdown => {
                self.give_back(lease, track).await;
                self.say_goodbye().await;
                false
            }
            Killed => {
                // Mid-transaction, maybe: the server's state is unknown.
                lease.discard();
                self.say_goodbye().await;
                false
            }
            ref outcome @ (ServerClosed | ServerIo(_)) => {
                lease.discard();
                let route = self.pool.settings().route.clone();
                if let Some(r) = &route {
                    // Maybe the member died: have the provider look now.
                    r.cluster.nudge();
                }
                // The server usually says why (e.g. FATAL 57P01) before closing.
                if track.last_server_tag != b'E' {
                    let message = match &route {
                        Some(r) => format!(
                            "server connection lost; cluster \"{}\" may be failing over: reconnect and retry",
                            r.cluster.name
                        ),
                        None => "server connection lost".to_string(),
                    };
                    send_error(&mut self.client, Severity::Fatal, "08006", &message).await;
                }
                let error = match &outcome {
                    ServerIo(e) => e.to_string(),
                    _ => "closed".into(),
                };
                tracing::warn!(db = %self.db(), user = %self.user(), %error, "server connection lost while in use");
                false
            }
            ClientProtocol(e) => {
                lease.discard();
                send_error(&mut self.client, Severity::Fatal, "08P01", &e.to_string()).await;
                false
            }
            ClientMalformed(e) => {
                lease.discard();
                send_error(&mut self.client, Severity::Fatal, "08P01", &e.to_string()).await;
                false
            }
            ServerProtocol(e) => {
                lease.discard();
                send_error(
                    &mut self.client,
                    Severity::Fatal,
                    "08P01",
                    &format!("server sent an invalid message: {e}"),
                )
                .await;
                false
            }
            StatementModeTransaction => {
                lease.discard();
                send_error(
                    &mut self.client,
                    Severity::Fatal,
                    "0A000",
                    "transaction blocks are not allowed in statement pooling mode",
                )
                .await;
                false
            }
            IdleTimeout { in_transaction } => {
                let (code, msg) = if in_transaction {
                    (
                        "25P03",
                        "idle_transaction_timeout: closing connection idle in transaction",
                    )
                } else {
                    ("57P05", "client_idle_timeout: closing idle connection")
                };
                self.give_back(lease, track).await;
                send_error(&mut self.client, Severity::Fatal, code, msg).await;
                false
            }
        }
    }

    /// Why the client's kill switch fired: shutdown, or the admin console.
    pub(super) async fn say_goodbye(&mut self) {
        let message = if self.app.shutdown.is_cancelled() {
            "pgwolf is shutting down"
        } else {
            "terminating connection due to administrator command (pgwolf KILL / KILL_CLIENT)"
        };
        send_error(&mut self.client, Severity::Fatal, "57P01", message).await;
    }

    /// The client is leaving: keep the server if it is clean (after the
    /// reset query where configured), else close it.
    pub(super) async fn give_back(&mut self, mut lease: Lease, track: &Track) {
        if !track.idle() || !lease.conn().rbuf.is_empty() {
            lease.discard();
            return;
        }
        let reset = self.pool.settings().reset_query.clone();
        if let Some(sql) = reset {
            let conn = lease.conn();
            if conn.run_own_query(&sql).await.is_err() {
                lease.discard();
                return;
            }
            // RESET ALL is not announced for unreported settings.
            conn.params.forget_unreported();
            if drops_prepared_statements(&sql) {
                conn.prepared.clear();
            }
        }
        lease.release();
    }
}

/// Whether a reset query drops every prepared statement, pgwolf's too. Only
/// then may the connection's cache be emptied: a cache that forgets a
/// statement the server still has would make its next Parse fail (42P05).
fn drops_prepared_statements(sql: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    sql.contains("discard all") || sql.contains("deallocate all")
}
