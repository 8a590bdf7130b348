//! The rewriter between one client and the server connections it is lent,
//! with the server's answers fed through [`Responses`] by hand.

use super::*;
use crate::prepared::responses::Verdict;
use crate::protocol::frame;

fn parse_msg(name: &str, query: &str) -> BytesMut {
    let mut def = query.as_bytes().to_vec();
    def.extend_from_slice(b"\0\0\0");
    let mut m = BytesMut::new();
    Parse::encode(&mut m, name.as_bytes(), &def);
    m
}

fn bind_msg(stmt: &str) -> BytesMut {
    let mut m = BytesMut::new();
    let rest: &[u8] = b"\0\0\0\0\0\0";
    Bind {
        portal: b"",
        statement: stmt.as_bytes(),
        rest,
    }
    .encode_as(&mut m, stmt.as_bytes());
    m
}

fn target_msg(tag: u8, kind: u8, name: &str) -> BytesMut {
    let mut m = BytesMut::new();
    Target::encode(&mut m, tag, kind, name.as_bytes());
    m
}

fn simple(tag: u8) -> BytesMut {
    BytesMut::from(&[tag, 0, 0, 0, 4][..])
}

/// (tag, statement name) of each message sent to the server.
fn sent(out: &BytesMut) -> Vec<(char, String)> {
    let mut v = Vec::new();
    let mut buf = out.clone();
    while let Some((tag, body)) = frame::split_message(&mut buf, 1 << 20).unwrap() {
        let name = match tag {
            message::PARSE => Parse::decode(&body).unwrap().name.to_vec(),
            message::BIND => Bind::decode(&body).unwrap().statement.to_vec(),
            DESCRIBE | CLOSE => Target::decode(&body, "t").unwrap().name.to_vec(),
            _ => Vec::new(),
        };
        v.push((tag as char, String::from_utf8(name).unwrap()));
    }
    v
}

/// A client's names plus one server connection's cache.
struct Side {
    names: ClientStatements,
    server: ServerStatements,
    responses: Responses,
    counters: Counters,
}

impl Side {
    fn new(capacity: usize) -> Self {
        Side {
            names: ClientStatements::default(),
            server: ServerStatements::new(capacity),
            responses: Responses::default(),
            counters: Counters::default(),
        }
    }

    /// Rewrites `msgs`; returns what the server receives and the answers
    /// pgwolf gives at once.
    fn send(&mut self, msgs: &[BytesMut]) -> (Vec<(char, String)>, Vec<u8>) {
        let mut out = BytesMut::new();
        let mut answers = BytesMut::new();
        for m in msgs {
            self.rewriter().client_message(m, &mut out).unwrap();
            self.responses.answer_due(&mut answers);
        }
        (sent(&out), answers.iter().step_by(5).copied().collect())
    }

    /// The server answers with `tags`; returns what the client sees.
    fn answer(&mut self, tags: &[u8]) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut undone = Vec::new();
        for &t in tags {
            if self.responses.on_server(t, &mut undone) == Verdict::Forward {
                seen.push(t);
            }
            let mut own = BytesMut::new();
            self.responses.answer_due(&mut own);
            seen.extend(own.iter().step_by(5));
        }
        self.rewriter().undo(undone);
        seen
    }

    fn rewriter(&mut self) -> Rewriter<'_> {
        Rewriter {
            names: &mut self.names,
            server: &mut self.server,
            responses: &mut self.responses,
            counters: &self.counters,
        }
    }
}

fn statement(query: &str) -> Arc<Statement> {
    let mut def = query.as_bytes().to_vec();
    def.extend_from_slice(b"\0\0\0");
    Statement::new(Bytes::from(def))
}

fn server_name(query: &str) -> String {
    String::from_utf8(statement(query).server_name().to_vec()).unwrap()
}

#[test]
fn named_statement_follows_the_client_to_another_server() {
    let q = "SELECT 1";
    let mut a = Side::new(10);
    let (to_server, own) = a.send(&[
        parse_msg("S_1", q),
        bind_msg("S_1"),
        simple(b'E'),
        simple(b'S'),
    ]);
    let pg = server_name(q);
    assert_eq!(
        to_server,
        vec![
            ('P', pg.clone()),
            ('B', pg.clone()),
            ('E', "".into()),
            ('S', "".into())
        ]
    );
    assert!(own.is_empty());
    assert_eq!(a.answer(b"12DCZ"), b"12DCZ");

    // The client's next transaction lands on a server without it.
    let names = std::mem::take(&mut a.names);
    let mut b = Side::new(10);
    b.names = names;
    let (to_server, _) = b.send(&[bind_msg("S_1"), simple(b'E'), simple(b'S')]);
    assert_eq!(
        to_server,
        vec![
            ('P', pg.clone()),
            ('B', pg),
            ('E', "".into()),
            ('S', "".into())
        ]
    );
    assert_eq!(
        b.answer(b"12DCZ"),
        b"2DCZ",
        "pgwolf's own ParseComplete is hidden"
    );
    assert_eq!(
        b.counters.misses.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn parse_of_a_statement_the_server_has_is_answered_by_pgwolf() {
    let q = "SELECT 2";
    let mut s = Side::new(10);
    s.send(&[parse_msg("a", q), simple(b'S')]);
    s.answer(b"1Z");
    // Another client name, same definition: no round trip for the Parse.
    let (to_server, own) = s.send(&[parse_msg("b", q), bind_msg("b"), simple(b'E'), simple(b'S')]);
    let pg = server_name(q);
    assert_eq!(
        to_server,
        vec![('B', pg), ('E', "".into()), ('S', "".into())]
    );
    assert_eq!(own, b"1", "ParseComplete at once, first in line");
    assert_eq!(s.answer(b"2CZ"), b"2CZ");
    // The Parse and the Bind each found it prepared.
    assert_eq!(
        s.counters.hits.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn close_forgets_the_name_not_the_servers_statement() {
    let q = "SELECT 3";
    let mut s = Side::new(10);
    s.send(&[parse_msg("c", q), simple(b'S')]);
    s.answer(b"1Z");
    let (to_server, own) = s.send(&[target_msg(CLOSE, STATEMENT, "c"), simple(b'S')]);
    assert_eq!(to_server, vec![('S', "".into())]);
    assert_eq!(own, b"3");
    assert!(s.names.get(b"c").is_none());
    assert_eq!(s.server.len(), 1);
    assert_eq!(s.answer(b"Z"), b"Z");
    // The name can be defined again.
    let (to_server, own) = s.send(&[parse_msg("c", q), simple(b'S')]);
    assert_eq!(to_server, vec![('S', "".into())]);
    assert_eq!(own, b"1");
}

#[test]
fn a_full_cache_closes_the_least_recently_used_first() {
    let mut s = Side::new(1);
    s.send(&[parse_msg("a", "SELECT 'a'"), simple(b'S')]);
    s.answer(b"1Z");
    // The next transaction on this connection.
    s.server.start_lease();
    let (to_server, _) = s.send(&[parse_msg("b", "SELECT 'b'"), simple(b'S')]);
    assert_eq!(
        to_server,
        vec![
            ('C', server_name("SELECT 'a'")),
            ('P', server_name("SELECT 'b'")),
            ('S', "".into())
        ]
    );
    assert_eq!(
        s.answer(b"31Z"),
        b"1Z",
        "the eviction's CloseComplete is hidden"
    );
    assert_eq!(
        s.counters
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // 'a' is still the client's: used again, in a later transaction, it is
    // prepared again in place of 'b'.
    s.server.start_lease();
    let (to_server, _) = s.send(&[bind_msg("a"), simple(b'S')]);
    assert_eq!(to_server[0], ('C', server_name("SELECT 'b'")));
    assert_eq!(to_server[1], ('P', server_name("SELECT 'a'")));
}

#[test]
fn statements_of_one_batch_are_not_evicted_under_its_portals() {
    // Cap 1, one pipeline: Bind a, then Parse b. Closing a on the server
    // would close the portal the Execute after it runs.
    let mut s = Side::new(1);
    s.server.start_lease();
    let (to_server, _) = s.send(&[
        parse_msg("a", "SELECT 'a'"),
        bind_msg("a"),
        parse_msg("b", "SELECT 'b'"),
        simple(b'E'),
        simple(b'S'),
    ]);
    assert!(
        to_server.iter().all(|(tag, _)| *tag != 'C'),
        "no Close within the batch: {to_server:?}"
    );
    assert_eq!(s.server.len(), 2);
}

#[test]
fn a_parse_the_server_refuses_leaves_no_name_behind() {
    let mut s = Side::new(10);
    s.send(&[parse_msg("bad", "SELEC 1"), simple(b'S')]);
    assert_eq!(s.answer(b"EZ"), b"EZ");
    assert!(
        s.names.get(b"bad").is_none(),
        "PostgreSQL keeps no failed statement"
    );
    assert!(s.server.is_empty());
}

#[test]
fn messages_after_an_error_are_undone_as_the_server_skipped_them() {
    let mut s = Side::new(10);
    s.send(&[parse_msg("ok", "SELECT 1"), simple(b'S')]);
    s.answer(b"1Z");
    // Bind fails (wrong parameter count, say); the later Parse and Close
    // are skipped by the server, so their effects must not stay.
    s.send(&[
        bind_msg("ok"),
        parse_msg("later", "SELECT 5"),
        target_msg(CLOSE, STATEMENT, "ok"),
        simple(b'S'),
    ]);
    assert_eq!(s.answer(b"EZ"), b"EZ");
    assert!(s.names.get(b"later").is_none());
    assert!(
        s.names.get(b"ok").is_some(),
        "the skipped Close did not happen"
    );
    assert!(!s.server.contains(&statement("SELECT 5")));
}

#[test]
fn redefining_a_name_gets_the_servers_own_error() {
    let mut s = Side::new(10);
    s.send(&[parse_msg("x", "SELECT 1"), simple(b'S')]);
    s.answer(b"1Z");
    let (to_server, own) = s.send(&[parse_msg("x", "SELECT 2"), simple(b'S')]);
    assert_eq!(to_server[0], ('P', server_name("SELECT 1")));
    assert!(own.is_empty());
    assert_eq!(s.answer(b"EZ"), b"EZ");
    let kept = s.names.get(b"x").unwrap();
    assert_eq!(&kept.definition[..8], b"SELECT 1");
}

#[test]
fn unnamed_and_unknown_pass_unchanged() {
    let mut s = Side::new(10);
    let msgs = [
        parse_msg("", "SELECT 1"),
        bind_msg(""),
        target_msg(DESCRIBE, message::PORTAL, ""),
        simple(b'E'),
        bind_msg("never_prepared"),
        simple(b'S'),
    ];
    let mut expected = BytesMut::new();
    for m in &msgs {
        expected.extend_from_slice(m);
    }
    let mut out = BytesMut::new();
    for m in &msgs {
        s.rewriter().client_message(m, &mut out).unwrap();
    }
    assert_eq!(out, expected, "byte for byte");
    assert_eq!(s.answer(b"12TCEZ"), b"12TCEZ");
    assert!(s.server.is_empty());
}

#[test]
fn describe_of_a_named_statement_is_renamed() {
    let mut s = Side::new(10);
    s.send(&[parse_msg("d", "SELECT 4"), simple(b'S')]);
    s.answer(b"1Z");
    let (to_server, _) = s.send(&[target_msg(DESCRIBE, STATEMENT, "d"), simple(b'S')]);
    assert_eq!(to_server[0], ('D', server_name("SELECT 4")));
    assert_eq!(s.answer(b"tTZ"), b"tTZ");
}

#[test]
fn malformed_messages_are_errors() {
    let mut s = Side::new(10);
    let mut out = BytesMut::new();
    let bad = BytesMut::from(&b"P\0\0\0\x07ab"[..]);
    assert!(s.rewriter().client_message(&bad, &mut out).is_err());
    let bad = BytesMut::from(&b"D\0\0\0\x06Xa"[..]);
    assert!(s.rewriter().client_message(&bad, &mut out).is_err());
}
