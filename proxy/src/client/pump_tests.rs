//! The pump's transaction-boundary decisions, driven with scripted protocol
//! bytes over loopback sockets: the test plays the application and the
//! database, the pump runs in its own task.

use super::pump::{Outcome, Pump, Track};
use crate::config::PoolMode;
use crate::protocol::frame::Scanner;
use crate::server::params::{tracked_index, ParamSet};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

struct Done {
    outcome: Outcome,
    track: Track,
    client_params: std::sync::Arc<ParamSet>,
    sbuf_capacity: usize,
}

/// The far ends: `app` plays the client application, `db` the server.
struct Ends {
    app: TcpStream,
    db: TcpStream,
    pump: JoinHandle<Done>,
}

async fn start(mode: PoolMode) -> Ends {
    let (app, proxy_client) = pair().await;
    let (proxy_server, db) = pair().await;
    let mut proxy_client = crate::tls::Stream::Plain(proxy_client);
    let mut proxy_server = crate::tls::Stream::Plain(proxy_server);
    let pump = tokio::spawn(async move {
        let token = CancellationToken::new();
        let kill = crate::registry::kill::Kill::default();
        let (mut cbuf, mut sbuf, mut cscan) = (BytesMut::new(), BytesMut::new(), Scanner::new());
        let (mut server_params, mut client_params) = (ParamSet::default(), Default::default());
        let mut track = Track::default();
        let outcome = Pump {
            client: &mut proxy_client,
            cbuf: &mut cbuf,
            cscan: &mut cscan,
            server: &mut proxy_server,
            sbuf: &mut sbuf,
            server_params: &mut server_params,
            client_params: &mut client_params,
            track: &mut track,
            mode,
            max_packet: 8 << 20,
            max_pipelined: 10_000,
            kill: &kill,
            server_generation: 1,
            draining: &token,
            timer: None,
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
            transaction_timeout: Duration::ZERO,
            prepared: None,
        }
        .run()
        .await;
        Done {
            outcome,
            track,
            client_params,
            sbuf_capacity: sbuf.capacity(),
        }
    });
    Ends { app, db, pump }
}

impl Ends {
    async fn expect(s: &mut TcpStream, want: &[u8]) {
        let mut got = vec![0; want.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("bytes within 5 s")
            .unwrap();
        assert_eq!(got, want);
    }

    /// The application sends; the database must receive exactly that.
    async fn app_sends(&mut self, bytes: &[u8]) {
        self.app.write_all(bytes).await.unwrap();
        Self::expect(&mut self.db, bytes).await;
    }

    /// The database answers; the application must receive exactly that.
    async fn db_sends(&mut self, bytes: &[u8]) {
        self.db.write_all(bytes).await.unwrap();
        Self::expect(&mut self.app, bytes).await;
    }

    async fn still_running(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!self.pump.is_finished(), "pump ended too early");
    }

    async fn done(self) -> Done {
        tokio::time::timeout(Duration::from_secs(5), self.pump)
            .await
            .expect("pump must decide within 5 s")
            .unwrap()
    }
}

#[tokio::test]
async fn simple_query_releases_at_idle_ready() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"select 1\0")).await;
    e.db_sends(&cat(&[msg(b'C', b"SELECT 1\0"), ready(b'I')]))
        .await;
    let d = e.done().await;
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
}

#[tokio::test]
async fn open_transaction_keeps_the_server_until_commit() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"begin\0")).await;
    e.db_sends(&ready(b'T')).await;
    e.still_running().await;
    e.app_sends(&msg(b'Q', b"commit\0")).await;
    e.db_sends(&ready(b'I')).await;
    let d = e.done().await;
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
}

#[tokio::test]
async fn pipeline_releases_only_after_the_last_sync() {
    let mut e = start(PoolMode::Transaction).await;
    let one = cat(&[
        msg(b'P', b"\0select 1\0\0\0"),
        msg(b'B', b"\0\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]);
    e.app_sends(&cat(&[one.clone(), one])).await;
    e.db_sends(&ready(b'I')).await;
    e.still_running().await;
    e.db_sends(&ready(b'I')).await;
    let d = e.done().await;
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
}

#[tokio::test]
async fn extended_messages_after_sync_keep_the_server() {
    let mut e = start(PoolMode::Transaction).await;
    // A Parse and Flush before any Sync: the server holds state for this client.
    e.app_sends(&cat(&[msg(b'P', b"s1\0select 1\0\0\0"), msg(b'H', b"")]))
        .await;
    e.db_sends(&msg(b'1', b"")).await;
    e.still_running().await;
    e.app_sends(&msg(b'S', b"")).await;
    e.db_sends(&ready(b'I')).await;
    let d = e.done().await;
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
}

#[tokio::test]
async fn copy_in_data_is_part_of_the_query() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"copy t from stdin\0")).await;
    e.db_sends(&msg(b'G', b"\0\0\0")).await;
    e.app_sends(&cat(&[
        msg(b'd', b"1\n"),
        msg(b'd', b"2\n"),
        msg(b'c', b""),
    ]))
    .await;
    e.db_sends(&cat(&[msg(b'C', b"COPY 2\0"), ready(b'I')]))
        .await;
    let d = e.done().await;
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
}

/// tokio-postgres' copy_in: Bind, Execute, Sync, data, CopyDone, Sync. The
/// server ignores the first Sync (it arrives in copy-in mode) and answers
/// with one ReadyForQuery.
#[tokio::test]
async fn extended_copy_in_with_early_sync_releases() {
    for fail in [false, true] {
        let mut e = start(PoolMode::Transaction).await;
        e.app_sends(&cat(&[
            msg(b'B', b"\0s0\0\0\0\0\0\0\0"),
            msg(b'E', b"\0\0\0\0\0"),
            msg(b'S', b""),
        ]))
        .await;
        e.db_sends(&cat(&[msg(b'2', b""), msg(b'G', b"\0\0\0")]))
            .await;
        let end = if fail {
            msg(b'f', b"bad\0")
        } else {
            msg(b'c', b"")
        };
        e.app_sends(&cat(&[msg(b'd', b"1\n"), end, msg(b'S', b"")]))
            .await;
        e.db_sends(&cat(&[msg(b'C', b"COPY 1\0"), ready(b'I')]))
            .await;
        let d = e.done().await;
        assert!(
            matches!(d.outcome, Outcome::Released),
            "fail={fail}: {:?}",
            d.outcome
        );
    }
}

#[tokio::test]
async fn terminate_is_not_forwarded() {
    let Ends {
        mut app,
        mut db,
        pump,
    } = start(PoolMode::Transaction).await;
    app.write_all(&msg(b'X', b"")).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), pump)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::ClientClosed),
        "{:?}",
        d.outcome
    );
    assert!(d.track.idle());
    let mut probe = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_millis(100), db.read(&mut probe)).await;
    // Nothing arrives: a timeout, or EOF once the pump's socket is dropped.
    assert!(
        matches!(n, Err(_) | Ok(Ok(0))),
        "the server must not see the client's Terminate: {n:?}"
    );
}

#[tokio::test]
async fn session_mode_never_releases() {
    let mut e = start(PoolMode::Session).await;
    e.app_sends(&msg(b'Q', b"select 1\0")).await;
    e.db_sends(&ready(b'I')).await;
    e.still_running().await;
    drop(e.app);
    let d = tokio::time::timeout(Duration::from_secs(5), e.pump)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::ClientClosed),
        "{:?}",
        d.outcome
    );
    assert!(
        d.track.idle(),
        "a client leaving between queries leaves a clean server"
    );
}

#[tokio::test]
async fn statement_mode_refuses_transactions() {
    let mut e = start(PoolMode::Statement).await;
    e.app_sends(&msg(b'Q', b"begin\0")).await;
    e.db_sends(&ready(b'T')).await;
    let d = e.done().await;
    assert!(
        matches!(d.outcome, Outcome::StatementModeTransaction),
        "{:?}",
        d.outcome
    );
}

#[tokio::test]
async fn server_closing_mid_query_is_reported() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"select pg_sleep(10)\0")).await;
    drop(e.db);
    let d = tokio::time::timeout(Duration::from_secs(5), e.pump)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(d.outcome, Outcome::ServerClosed | Outcome::ServerIo(_)),
        "{:?}",
        d.outcome
    );
    assert!(!d.track.idle());
}

#[tokio::test]
async fn parameter_changes_follow_the_client() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"set timezone = 'Asia/Tokyo'\0"))
        .await;
    e.db_sends(&cat(&[
        msg(b'C', b"SET\0"),
        msg(b'S', b"TimeZone\0Asia/Tokyo\0"),
        ready(b'I'),
    ]))
    .await;
    let d = e.done().await;
    let tz = tracked_index("TimeZone").unwrap();
    assert_eq!(d.client_params.get(tz), Some("Asia/Tokyo"));
}

#[tokio::test]
async fn large_rows_stream_without_buffering_whole() {
    let mut e = start(PoolMode::Transaction).await;
    e.app_sends(&msg(b'Q', b"select big\0")).await;
    let row = msg(b'D', &vec![b'x'; 4 << 20]);
    let Ends {
        mut app,
        mut db,
        pump,
    } = e;
    let writer = tokio::spawn(async move {
        db.write_all(&row).await.unwrap();
        db.write_all(&ready(b'I')).await.unwrap();
        db
    });
    let mut got = vec![0u8; (4 << 20) + 5 + 6];
    app.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[got.len() - 6..], &ready(b'I')[..]);
    writer.await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), pump)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(d.outcome, Outcome::Released), "{:?}", d.outcome);
    assert!(
        d.sbuf_capacity < 256 * 1024,
        "buffer grew to {}",
        d.sbuf_capacity
    );
}
