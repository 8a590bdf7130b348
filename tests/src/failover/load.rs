//! The clients of a scenario: writers, readers on the read-only alias and
//! a long transaction, and what each saw.

use crate::clients::try_connect;
use crate::ha::{HA_APP_DB, HA_APP_PASSWORD, HA_APP_USER};
use crate::{connect, within};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

/// The value the long transaction inserts and never commits.
pub const LONG_TX_VALUE: i64 = -1;

/// What the clients of one kind (writers, or readers) saw: acknowledged
/// values, errors with when they came, and slow requests.
#[derive(Default)]
pub struct Writes {
    pub acked: Mutex<Vec<(i64, Instant)>>,
    pub errors: Mutex<Vec<(Instant, String)>>,
    /// (started, answered) of every request that had to wait over 1 s.
    pub slow: Mutex<Vec<(Instant, Instant)>>,
    /// Requests still unanswered when the clients were stopped (and their
    /// start), for poolers that leave a client waiting on a lost server.
    pub unanswered: Mutex<Vec<Instant>>,
    /// Readers only: which member's address answered each read, and when.
    pub served_by: Mutex<Vec<(Ipv4Addr, Instant)>>,
    /// The next value to write; taken when a request is sent, so values
    /// at or above a reading of it were first sent after that reading.
    pub(super) next: AtomicI64,
}

impl Writes {
    /// The longest any request waited (0 when none waited over 1 s).
    pub fn longest_wait(&self) -> Duration {
        let slow = self.slow.lock().unwrap();
        slow.iter().map(|(s, a)| *a - *s).max().unwrap_or_default()
    }

    /// Requests acknowledged after `from` and before `to`.
    pub fn acked_between(&self, from: Instant, to: Instant) -> usize {
        let acked = self.acked.lock().unwrap();
        acked
            .iter()
            .filter(|(_, at)| *at > from && *at < to)
            .count()
    }

    /// The errors counted by SQLSTATE ("bare" for no ErrorResponse).
    pub fn errors_by_code(&self) -> BTreeMap<String, usize> {
        let mut by_code = BTreeMap::new();
        for (_, m) in self.errors.lock().unwrap().iter() {
            let code = m.split(':').next().unwrap_or_default().to_string();
            *by_code.entry(code).or_default() += 1;
        }
        by_code
    }

    /// Reads answered by `addr` after `from`.
    pub fn served_by_after(&self, addr: Ipv4Addr, from: Instant) -> usize {
        let served = self.served_by.lock().unwrap();
        served
            .iter()
            .filter(|(a, at)| *a == addr && *at > from)
            .count()
    }

    /// The distinct error messages.
    pub fn messages(&self) -> BTreeSet<String> {
        let errors = self.errors.lock().unwrap();
        errors.iter().map(|(_, m)| m.clone()).collect()
    }
}

/// `SQLSTATE: message`, or `bare: ...` when the connection just ended
/// without an ErrorResponse: a defect wherever PostgreSQL itself would
/// have answered.
pub fn described(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => format!("bare: {e}"),
    }
}

/// A client looping one statement on `db` through the pooler at `port`
/// (INSERTs into `acks` on the primary database, on its read-only
/// alias a SELECT of the answering server's address), reconnecting after an error that ended its
/// connection, until `stop`.
async fn worker(port: u16, db: String, w: Arc<Writes>, stop: Arc<AtomicBool>) {
    let writes = db == HA_APP_DB;
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match try_connect(port, HA_APP_USER, HA_APP_PASSWORD, &db).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    w.errors
                        .lock()
                        .unwrap()
                        .push((Instant::now(), described(&e)));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        let v = w.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let sql = if writes {
            format!("INSERT INTO acks VALUES ({v})")
        } else {
            "SELECT host(inet_server_addr())".to_string()
        };
        let r = {
            let request = c.simple_query(&sql);
            tokio::pin!(request);
            // Stopped while waiting: counted as unanswered.
            loop {
                tokio::select! {
                    r = &mut request => break r,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stop.load(Ordering::Relaxed) {
                            w.unanswered.lock().unwrap().push(started);
                            return;
                        }
                    }
                }
            }
        };
        let answered = Instant::now();
        if answered - started > Duration::from_secs(1) {
            w.slow.lock().unwrap().push((started, answered));
        }
        match r {
            Ok(messages) => {
                w.acked.lock().unwrap().push((v, answered));
                let addr = messages.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0)?.parse::<Ipv4Addr>().ok(),
                    _ => None,
                });
                if let Some(addr) = addr {
                    w.served_by.lock().unwrap().push((addr, answered));
                }
            }
            Err(e) => {
                w.errors.lock().unwrap().push((answered, described(&e)));
                // A FATAL ends the connection; the driver may not have seen
                // the close yet, and a request on it would only fail again.
                let fatal = e.as_db_error().is_some_and(|d| d.severity() == "FATAL");
                if fatal || c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The long transaction's answer: when, and what.
pub type LongAnswer = (Instant, Result<(), tokio_postgres::Error>);

/// The clients of a scenario: 20 writers, 10 readers on the read-only
/// alias and, optionally, one long transaction (an INSERT of
/// [`LONG_TX_VALUE`], then a 60 s statement) open on the primary.
pub struct Load {
    pub writes: Arc<Writes>,
    pub reads: Arc<Writes>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    long: Option<tokio::task::JoinHandle<LongAnswer>>,
}

impl Load {
    /// Starts the clients on the pooler at `port` and runs them for 2 s.
    pub async fn start(port: u16, with_long: bool) -> Load {
        let (writes, reads) = (Arc::new(Writes::default()), Arc::new(Writes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let ro = format!("{HA_APP_DB}_ro");
        let mut tasks: Vec<_> = (0..20)
            .map(|_| {
                let db = HA_APP_DB.to_string();
                tokio::spawn(worker(port, db, writes.clone(), stop.clone()))
            })
            .collect();
        tasks.extend(
            (0..10).map(|_| tokio::spawn(worker(port, ro.clone(), reads.clone(), stop.clone()))),
        );
        let mut long = None;
        if with_long {
            let long_tx = connect(port, HA_APP_USER, HA_APP_PASSWORD, HA_APP_DB).await;
            long_tx
                .batch_execute(&format!("BEGIN; INSERT INTO acks VALUES ({LONG_TX_VALUE})"))
                .await
                .unwrap();
            long = Some(tokio::spawn(async move {
                let r = long_tx.batch_execute("SELECT pg_sleep(60)").await;
                (Instant::now(), r)
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !writes.acked.lock().unwrap().is_empty(),
            "no write before the fault"
        );
        assert!(
            !reads.acked.lock().unwrap().is_empty(),
            "no read before the fault"
        );
        Load {
            writes,
            reads,
            stop,
            tasks,
            long,
        }
    }

    /// Stops the clients (a request still waiting is counted as
    /// unanswered); the long transaction's answer, if it ran and was
    /// answered.
    pub async fn stop(self) -> Option<LongAnswer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            within(40, "a client to stop", t).await.unwrap();
        }
        let mut long = self.long?;
        tokio::select! {
            r = &mut long => Some(r.unwrap()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                long.abort();
                None
            }
        }
    }
}
