//! PgBouncer's security history, the items a hostile peer brings: each test
//! names the CVE it replays against pgwolf. Clients are hand-built where
//! the bytes are the attack (a malformed SCRAM message, plaintext after
//! SSLRequest); servers are [`ScriptedServer`]s where a real PostgreSQL
//! would never send them (a SCRAM exchange with a huge nonce, an
//! ErrorResponse without a SQLSTATE, bytes injected after 'S'). Every
//! refusal is an ErrorResponse with a SQLSTATE, and pgwolf keeps serving.
//! docs/security.md has the table.

use pgwolf_tests::certs::Ca;
use pgwolf_tests::clients::try_connect;
use pgwolf_tests::scripted::{
    authentication, command_complete, error_response, logged_in, Peer, ScriptedServer,
};
use pgwolf_tests::wire::{message, startup_packet};
use pgwolf_tests::{
    sqlstate, userlist, within, Fixture, FixtureOptions, Pgwolf, PoolMode, APP_DB, APP_PASSWORD,
    APP_USER,
};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The next backend message, or None once pgwolf closed the connection.
async fn next(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    pgwolf_tests::wire::try_read_message(stream).await
}

/// An ErrorResponse's SQLSTATE and message fields.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut text) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', v)) => code = String::from_utf8_lossy(v).into(),
            Some((b'M', v)) => text = String::from_utf8_lossy(v).into(),
            _ => {}
        }
    }
    (code, text)
}

/// Reads until pgwolf's ErrorResponse and the close after it; the
/// (SQLSTATE, message). Panics on anything else, a hang or a bare close.
async fn refusal(stream: &mut TcpStream, what: &str) -> (String, String) {
    within(10, what, async {
        loop {
            match next(stream).await {
                Some((b'E', body)) => {
                    let e = error_fields(&body);
                    assert!(
                        next(stream).await.is_none(),
                        "{what}: still open after {e:?}"
                    );
                    return e;
                }
                Some((b'R', body)) if body.starts_with(&0i32.to_be_bytes()) => {
                    panic!("{what}: logged in")
                }
                Some(_) => continue,
                None => panic!("{what}: closed without an ErrorResponse"),
            }
        }
    })
    .await
}

/// A client that has sent its StartupMessage and been asked for SCRAM.
async fn asked_for_scram(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&startup_packet(&[("user", APP_USER), ("database", APP_DB)]))
        .await
        .unwrap();
    let (tag, body) = within(10, "AuthenticationSASL", next(&mut s))
        .await
        .expect("an answer to the startup packet");
    assert_eq!((tag, &body[..4]), (b'R', &10i32.to_be_bytes()[..]));
    s
}

fn initial_response(mechanism: &[u8], claimed_len: i32, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.to_vec();
    body.extend_from_slice(&claimed_len.to_be_bytes());
    body.extend_from_slice(data);
    message(b'p', &body)
}

/// CVE-2026-6664: a SASLInitialResponse or SASLResponse whose lengths lie
/// (negative, past the message, past the end of the packet, absurd) or
/// whose text is not SCRAM. Each is refused with 08P01 or 28P01, nothing
/// is allocated for a claimed length, and a real client logs in after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_6664_malformed_scram_from_a_client_is_refused_cleanly() {
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2).setting("auth_failure_delay = \"0s\""),
    )
    .await;
    let first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    let mut attacks: Vec<(&str, Vec<u8>)> = vec![
        (
            "a data length of i32::MAX",
            initial_response(b"SCRAM-SHA-256\0", i32::MAX, first),
        ),
        (
            "a negative data length",
            initial_response(b"SCRAM-SHA-256\0", -2, first),
        ),
        (
            "i32::MIN as the data length",
            initial_response(b"SCRAM-SHA-256\0", i32::MIN, first),
        ),
        (
            "a data length one past the data",
            initial_response(b"SCRAM-SHA-256\0", first.len() as i32 + 1, first),
        ),
        (
            "no data length at all",
            message(b'p', b"SCRAM-SHA-256\0\0\0"),
        ),
        (
            "a mechanism without its NUL",
            message(b'p', b"SCRAM-SHA-256"),
        ),
        (
            "channel binding asked for",
            initial_response(b"SCRAM-SHA-256-PLUS\0", first.len() as i32, first),
        ),
        (
            "a client-first of noise",
            initial_response(b"SCRAM-SHA-256\0", 6, b"\xff\xfe\0,r="),
        ),
    ];
    // Message lengths that lie: shorter than the length field, and 4 GiB.
    let mut short = b"p".to_vec();
    short.extend_from_slice(&3u32.to_be_bytes());
    attacks.push(("a message length of 3", short));
    let mut huge = b"p".to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(&[0; 64]);
    attacks.push(("a message length of 4 GiB", huge));
    let mut long = initial_response(b"SCRAM-SHA-256\0", 100_000, &vec![b'r'; 100_000]);
    long.truncate(20_000);
    attacks.push(("a 100 kB client-first (more than a login may send)", long));

    for (what, bytes) in &attacks {
        let started = Instant::now();
        let mut s = asked_for_scram(fx.port()).await;
        s.write_all(bytes).await.unwrap();
        let (code, text) = refusal(&mut s, what).await;
        println!("{what}: {code} {text} ({:?})", started.elapsed());
        assert!(
            code == "08P01" || code == "28P01",
            "{what}: SQLSTATE {code} ({text})"
        );
    }

    // A good client-first, then a client-final that lies about itself.
    for (what, last) in [
        ("a client-final of noise", message(b'p', b"\x00\x01\x02")),
        (
            "a client-final with another nonce",
            message(b'p', b"c=biws,r=other,p=AAAA"),
        ),
        (
            "a client-final with a proof of 64 kB",
            message(
                b'p',
                format!("c=biws,r=x,p={}", "A".repeat(65_536)).as_bytes(),
            ),
        ),
    ] {
        let mut s = asked_for_scram(fx.port()).await;
        s.write_all(&initial_response(
            b"SCRAM-SHA-256\0",
            first.len() as i32,
            first,
        ))
        .await
        .unwrap();
        let (tag, _) = within(10, "AuthenticationSASLContinue", next(&mut s))
            .await
            .expect("server-first");
        assert_eq!(tag, b'R');
        s.write_all(&last).await.unwrap();
        let (code, text) = refusal(&mut s, what).await;
        assert!(
            code == "08P01" || code == "28P01",
            "{what}: SQLSTATE {code} ({text})"
        );
    }

    let app = fx.connect().await;
    app.simple_query("SELECT 1").await.unwrap();
    assert!(!fx.proxy.log().contains("panicked"), "{}", fx.proxy.log());
}

/// pgwolf in front of `server`, one `[databases.NAME]` per name with
/// dbname = NAME (so the script can tell which case a login is), clients
/// trusted (the auth file's password is what pgwolf logs in to the server
/// with).
fn in_front_of(server: &ScriptedServer, names: &[&str], more: &str) -> Pgwolf {
    let mut config = format!("auth_type = \"trust\"\npool_mode = \"transaction\"\n{more}\n");
    for name in names {
        config.push_str(&format!(
            "[databases.{name}]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{name}\"\npool_size = 1\n",
            server.port()
        ));
    }
    Pgwolf::start(&config, &userlist(&[(APP_USER, APP_PASSWORD)]))
}

/// The database a StartupMessage body asks for.
fn database_of(startup: &[u8]) -> String {
    let fields: Vec<&[u8]> = startup[4..].split(|b| *b == 0).collect();
    fields
        .windows(2)
        .find(|w| w[0] == b"database")
        .map(|w| String::from_utf8_lossy(w[1]).into_owned())
        .unwrap_or_default()
}

/// The client nonce of pgwolf's SASLInitialResponse.
fn client_nonce(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("r=").nth(1).unwrap_or_default().to_string()
}

/// Plays a SCRAM server that goes wrong in the way `case` names.
async fn hostile_scram(mut peer: Peer) {
    let Some(startup) = peer.startup(b"N").await else {
        return;
    };
    let case = database_of(&startup);
    if case == "good" {
        peer.send(&logged_in()).await;
        peer.serve_queries(|_| command_complete("SELECT 0")).await;
        return;
    }
    if case == "final_first" {
        peer.send(&authentication(12, b"v=AAAA")).await;
        let _ = peer.read().await;
        return;
    }
    peer.send(&authentication(10, b"SCRAM-SHA-256\0\0")).await;
    let Some((_, body)) = peer.read().await else {
        return;
    };
    let nonce = client_nonce(&body);
    let salt = "c2FsdHNhbHRzYWx0c2FsdA==";
    let first = match case.as_str() {
        "long_nonce" => format!("r={nonce}{},s={salt},i=4096", "A".repeat(200_000)),
        "over_a_mebibyte" => format!("r={nonce}{},s={salt},i=4096", "A".repeat(1 << 21)),
        "foreign_nonce" => format!("r=someoneelse{},s={salt},i=4096", "A".repeat(64)),
        "iterations" => format!("r={nonce}xyz,s={salt},i=4294967295"),
        "no_salt" => format!("r={nonce}xyz,i=4096"),
        _ => format!("r={nonce}xyz,s={salt},i=4096"),
    };
    peer.send(&authentication(11, first.as_bytes())).await;
    if peer.read().await.is_none() {
        return;
    }
    let last = match case.as_str() {
        "long_final" => format!("v={}", "B".repeat(200_000)),
        "refused_final" => format!("e={}", "x".repeat(100_000)),
        _ => "v=AAAA".to_string(),
    };
    peer.send(&authentication(12, last.as_bytes())).await;
    let _ = peer.read().await;
}

/// CVE-2026-6665: a server whose SCRAM messages overflow what a pooler
/// expects (a 200 kB nonce, a 2 MiB server-first, a 200 kB signature, a
/// 100 kB refusal), lie (a nonce that is not ours, no salt, a final before
/// the challenge) or would cost a CPU for minutes (2^32 - 1 iterations).
/// Each ends that login with a clear error within seconds; pgwolf, and
/// its other databases, stay up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_6665_a_hostile_server_s_scram_ends_that_login_only() {
    let server = ScriptedServer::start(hostile_scram).await;
    let cases = [
        "long_nonce",
        "over_a_mebibyte",
        "foreign_nonce",
        "iterations",
        "no_salt",
        "long_final",
        "refused_final",
        "final_first",
    ];
    let mut names = cases.to_vec();
    names.push("good");
    let proxy = in_front_of(&server, &names, "server_login_timeout = \"10s\"");
    for case in cases {
        let started = Instant::now();
        let e = try_connect(proxy.port(), APP_USER, "any", case)
            .await
            .expect_err(case);
        let code = sqlstate(&e).map(str::to_string);
        let text = e.as_db_error().map(|d| d.message().to_string());
        println!("{case}: {code:?} {text:?} ({:?})", started.elapsed());
        assert!(
            text.is_some_and(|t| t.len() < 1_100),
            "{case}: a hostile server's text is not repeated whole"
        );
        assert!(
            matches!(code.as_deref(), Some("08P01" | "28P01" | "28000")),
            "{case}: {e:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case}: refused after {:?}",
            started.elapsed()
        );
        let good = try_connect(proxy.port(), APP_USER, "any", "good")
            .await
            .unwrap_or_else(|e| panic!("after {case}: {e}"));
        good.simple_query("SELECT 0").await.unwrap();
    }
    let log = proxy.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains(&"A".repeat(1_000)),
        "a hostile server's bytes are not logged whole"
    );
}

/// Answers as a server whose errors carry no SQLSTATE: at login, or to
/// a query containing "boom".
async fn errors_without_sqlstate(mut peer: Peer) {
    let Some(startup) = peer.startup(b"N").await else {
        return;
    };
    match database_of(&startup).as_str() {
        "no_code_at_login" => {
            peer.send(&error_response(&[
                (b'S', "FATAL"),
                (b'M', "something broke"),
            ]))
            .await
        }
        "no_fields_at_login" => peer.send(&error_response(&[])).await,
        "bad_code_at_login" => {
            peer.send(&error_response(&[
                (b'S', "FATAL"),
                (b'C', "\u{7f}x"),
                (b'M', "odd"),
            ]))
            .await
        }
        _ => {
            peer.send(&logged_in()).await;
            peer.serve_queries(|sql| {
                if sql.contains("boom") {
                    let mut out = error_response(&[(b'S', "ERROR"), (b'M', "no code here")]);
                    out.extend(pgwolf_tests::scripted::ready_for_query());
                    out
                } else {
                    command_complete("SELECT 0")
                }
            })
            .await;
        }
    }
}

/// CVE-2026-6666: an ErrorResponse without a SQLSTATE (or with no field
/// at all, or a code that is not one) crashed PgBouncer. At login pgwolf
/// gives the client XX000 and the server's message (or says there was
/// none); in a session the server's error goes through as the server sent
/// it and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_6666_an_error_without_sqlstate_is_answered_not_fatal() {
    let server = ScriptedServer::start(errors_without_sqlstate).await;
    let proxy = in_front_of(
        &server,
        &[
            "no_code_at_login",
            "no_fields_at_login",
            "bad_code_at_login",
            "session",
        ],
        "",
    );
    for (db, want) in [
        ("no_code_at_login", "something broke"),
        (
            "no_fields_at_login",
            "the server sent an error without a message",
        ),
        ("bad_code_at_login", "odd"),
    ] {
        let e = try_connect(proxy.port(), APP_USER, "any", db)
            .await
            .expect_err(db);
        let d = e.as_db_error().unwrap_or_else(|| panic!("{db}: {e:?}"));
        assert_eq!((d.code().code(), d.message()), ("XX000", want), "{db}");
    }

    // In a session, with the raw bytes visible: the error arrives, then
    // ReadyForQuery, and the next query runs.
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port()))
        .await
        .unwrap();
    s.write_all(&startup_packet(&[
        ("user", APP_USER),
        ("database", "session"),
    ]))
    .await
    .unwrap();
    within(10, "the welcome", async {
        while next(&mut s).await.expect("welcome").0 != b'Z' {}
    })
    .await;
    s.write_all(&message(b'Q', b"SELECT boom\0")).await.unwrap();
    let (tag, body) = within(10, "the error", next(&mut s)).await.unwrap();
    assert_eq!(tag, b'E');
    assert_eq!(error_fields(&body), (String::new(), "no code here".into()));
    let (tag, _) = within(10, "ReadyForQuery", next(&mut s)).await.unwrap();
    assert_eq!(tag, b'Z');
    s.write_all(&message(b'Q', b"SELECT 0\0")).await.unwrap();
    let (tag, _) = within(10, "the next query", next(&mut s)).await.unwrap();
    assert_eq!(tag, b'C', "the session goes on");
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}

/// A server that answers SSLRequest with 'S' and, in the same packet, a
/// plaintext login that a man in the middle would inject.
async fn injects_after_s(mut peer: Peer) {
    let mut answer = b"S".to_vec();
    answer.extend(logged_in());
    let _ = peer.startup(&answer).await;
    // pgwolf's TLS ClientHello, if it sent one, is read and dropped.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), peer.stream.read(&mut sink)).await;
}

/// CVE-2021-3935 and PostgreSQL's CVE-2021-23214/23222: bytes that follow
/// the answer to SSLRequest before the handshake are not read as if they
/// came over TLS, on either side. Server side: the injected login fails
/// the handshake with `prefer` and `require` alike, and pgwolf does not
/// fall back to plaintext. Client side: a StartupMessage sent with the
/// SSLRequest is refused (08P01) before any handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2021_3935_bytes_after_the_ssl_answer_are_never_trusted() {
    let server = ScriptedServer::start(injects_after_s).await;
    for mode in ["prefer", "require"] {
        let proxy = in_front_of(
            &server,
            &["injected"],
            &format!("server_tls_sslmode = \"{mode}\""),
        );
        let e = try_connect(proxy.port(), APP_USER, "any", "injected")
            .await
            .expect_err("an injected login is not a login");
        let code = sqlstate(&e).unwrap_or_else(|| panic!("{mode}: {e:?}"));
        assert!(code.starts_with("08"), "{mode}: {e}");
    }

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pgwolf test CA");
    let cert = ca.issue(dir.path(), "pgwolf", "localhost", &["localhost"]);
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2).setting(&format!(
        "client_tls_sslmode = \"allow\"\nclient_tls_cert_file = {:?}\nclient_tls_key_file = {:?}",
        cert.cert, cert.key
    )),
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", fx.port())).await.unwrap();
    let mut both = vec![0, 0, 0, 8, 4, 210, 22, 47];
    both.extend(startup_packet(&[("user", APP_USER), ("database", APP_DB)]));
    s.write_all(&both).await.unwrap();
    let (code, text) = refusal(&mut s, "plaintext after SSLRequest").await;
    assert_eq!(code, "08P01", "{text}");
    assert!(
        text.contains("unencrypted data after SSL request"),
        "{text}"
    );
}

/// CVE-2026-6667: KILL_CLIENT was open to console users outside
/// admin_users. A stats user here runs every control command, in either
/// case and with arguments, and each is refused (42501) and changes
/// nothing: the client it names still runs queries, the pool is not
/// paused, the setting is as it was, pgwolf is still up. SHOW still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cve_2026_6667_stats_users_run_no_control_command() {
    let fx = Fixture::with(
        FixtureOptions::new(PoolMode::Transaction, 2)
            .setting(&format!("stats_users = [\"{APP_USER}\"]")),
    )
    .await;
    let victim = fx.connect().await;
    victim.simple_query("SELECT 1").await.unwrap();
    let stats = try_connect(fx.port(), APP_USER, APP_PASSWORD, "pgwolf")
        .await
        .expect("a stats user enters the console");
    let clients = stats.simple_query("SHOW CLIENTS").await.unwrap();
    let ptrs: Vec<String> = clients
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                (r.get("database") == Some(APP_DB)).then(|| r.get("ptr").unwrap().to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ptrs.len(), 1, "{clients:?}");
    let victim_ptr = &ptrs[0];

    let commands = [
        format!("KILL_CLIENT {victim_ptr}"),
        format!("kill_client {victim_ptr}"),
        format!("KILL {APP_DB}"),
        "KILL".to_string(),
        "PAUSE".to_string(),
        format!("pause {APP_DB}"),
        "RESUME".to_string(),
        format!("RECONNECT {APP_DB}"),
        "WAIT_CLOSE".to_string(),
        "RELOAD".to_string(),
        "SET default_pool_size = 1".to_string(),
        "set max_client_conn=1;".to_string(),
        "SWITCHOVER".to_string(),
        "SHUTDOWN".to_string(),
    ];
    for sql in &commands {
        let e = stats.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), Some("42501"), "{sql}: {e}");
    }
    let v = victim.simple_query("SELECT 1").await;
    assert!(v.is_ok(), "the named client was touched: {v:?}");
    let value = |rows: &[tokio_postgres::SimpleQueryMessage], key: &str| {
        rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get("key") == Some(key) => {
                r.get("value").map(str::to_string)
            }
            _ => None,
        })
    };
    let config = stats.simple_query("SHOW CONFIG").await.unwrap();
    assert_eq!(value(&config, "default_pool_size").as_deref(), Some("2"));
    assert_eq!(value(&config, "max_client_conn").as_deref(), Some("10000"));
    let state = stats.simple_query("SHOW STATE").await.unwrap();
    assert_eq!(value(&state, "paused").as_deref(), Some("no"));
    assert_eq!(value(&state, "active").as_deref(), Some("yes"));
}
