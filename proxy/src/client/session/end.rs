//! How a session ends: the server connection settled (kept when clean,
//! closed when its state is unknown), and the client told why.

use super::Session;
use crate::client::pump::{Limit, Outcome, Track};
use crate::client::send_error;
use crate::pool::Lease;
use crate::protocol::backend::Severity;

impl Session {
    /// The session ends: settle the server, tell the client why.
    pub(super) async fn end(&mut self, outcome: Outcome, mut lease: Lease, track: &Track) {
        use Outcome::*;
        match outcome {
            Released => unreachable!("handled by finish"),
            ClientClosed => {
                self.give_back(lease, track).await;
            }
            ClientIo(e) => {
                tracing::debug!(db = %self.db(), user = %self.user(), error = %e, "client socket error");
                self.give_back(lease, track).await;
            }
            Shutdown => {
                self.give_back(lease, track).await;
                self.say_goodbye().await;
            }
            Killed => {
                // Mid-transaction, maybe: the server's state is unknown.
                lease.discard();
                self.say_goodbye().await;
            }
            ServerRetired => {
                lease.discard();
                self.member_lost(track).await;
            }
            ref outcome @ (ServerClosed | ServerIo(_)) => {
                lease.discard();
                let route = self.pool.settings().route.clone();
                if let Some(r) = &route {
                    // Maybe the member died: have the provider look now.
                    r.cluster.nudge();
                }
                // The server usually says why (e.g. FATAL 57P01) before closing.
                if track.last_server_tag != crate::protocol::backend::ERROR_RESPONSE {
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
            }
            ClientProtocol(e) => {
                lease.discard();
                send_error(&mut self.client, Severity::Fatal, "08P01", &e.to_string()).await;
            }
            ClientMalformed(e) => {
                lease.discard();
                send_error(&mut self.client, Severity::Fatal, "08P01", &e.to_string()).await;
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
            }
            Timeout { which, server_busy } => {
                if server_busy {
                    // The server may still be working on it: stop it, in
                    // the background (a hung server may not take the cancel).
                    if let Some(link) = lease.conn().link.clone() {
                        let timeout = self.app.config.load().server_connect_timeout;
                        tokio::spawn(crate::registry::cancel::cancel_on_server(link, timeout));
                    }
                }
                lease.discard();
                self.timed_out(which, server_busy).await;
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
            }
        }
    }

    /// The member the transaction ran on lost its role. With a request in
    /// flight its outcome is unknown (a COMMIT, or any statement outside a
    /// transaction block, may have taken effect): 08007, as libpq reports
    /// a connection lost during COMMIT. Otherwise the transaction is lost
    /// with the connection: 08006.
    async fn member_lost(&mut self, track: &Track) {
        let cluster = self
            .pool
            .settings()
            .route
            .as_ref()
            .map(|r| r.cluster.name.clone())
            .unwrap_or_default();
        let (code, message) = if track.outstanding > 0 {
            (
                "08007",
                format!(
                    "cluster \"{cluster}\": the server this transaction ran on lost its role \
                     (failover or switchover) while a request was in flight; whether it took \
                     effect is unknown: reconnect and check"
                ),
            )
        } else {
            (
                "08006",
                format!(
                    "cluster \"{cluster}\": the server this transaction ran on lost its role \
                     (failover or switchover); the transaction is lost: reconnect and retry"
                ),
            )
        };
        tracing::warn!(db = %self.db(), user = %self.user(), %cluster, code, "transaction ended: its server's member lost its role");
        send_error(&mut self.client, Severity::Fatal, code, &message).await;
    }

    /// `query_timeout` or `transaction_timeout` ended the transaction; the
    /// server connection was closed (and its query canceled).
    async fn timed_out(&mut self, which: Limit, server_busy: bool) {
        let cfg = self.app.config.load();
        let (code, message) = match which {
            Limit::Query => (
                "57014",
                format!(
                    "query_timeout: the server did not answer within {}; the query was canceled and the connection closed",
                    humantime::format_duration(cfg.query_timeout)
                ),
            ),
            Limit::Transaction => (
                "25P04",
                format!(
                    "transaction_timeout: the transaction was open longer than {}; it was {} and the connection closed",
                    humantime::format_duration(cfg.transaction_timeout),
                    if server_busy { "canceled" } else { "rolled back" }
                ),
            ),
        };
        drop(cfg);
        tracing::warn!(db = %self.db(), user = %self.user(), code, server_busy, "{message}");
        send_error(&mut self.client, Severity::Fatal, code, &message).await;
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
