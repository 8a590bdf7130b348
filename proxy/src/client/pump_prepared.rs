//! What the pump does for managed prepared statements: which client
//! messages it takes out of the stream for the rewriter, and how the
//! server's answers are walked through the queue of requests in flight.
//! Only used when `max_prepared_statements` is on and the pool shares
//! server connections (transaction and statement mode).

use crate::prepared::deallocate;
use crate::prepared::message::{self, Bind, Parse, Target, PORTAL, STATEMENT};
use crate::prepared::responses::{Action, Request, Responses, Undo, Verdict};
use crate::prepared::rewrite::Rewriter;
use crate::prepared::statements::{ClientStatements, Counters, ServerStatements};
use crate::protocol::backend::{parse_error_fields, COMMAND_COMPLETE, ERROR_RESPONSE};
use crate::protocol::frame::{Flow, Want};
use crate::protocol::frontend;
use bytes::BytesMut;

/// The state borrowed for one pump run.
pub struct Prepared<'a> {
    pub names: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub responses: &'a mut Responses,
    pub counters: &'a Counters,
    /// Rewritten client messages not yet written to the server.
    pub to_server: &'a mut BytesMut,
    /// pgwolf's own answers not yet written to the client.
    pub to_client: &'a mut BytesMut,
}

impl Prepared<'_> {
    pub fn rewriter(&mut self) -> Rewriter<'_> {
        Rewriter {
            names: self.names,
            server: self.server,
            responses: self.responses,
            counters: self.counters,
        }
    }

    pub fn idle(&self) -> bool {
        self.responses.is_empty() && self.to_server.is_empty() && self.to_client.is_empty()
    }
}

/// Client side, at a message header: requests with no name to rewrite get
/// their queue entry here; the four that may name a statement are looked
/// at whole, and so is a simple Query of a client with named statements (it
/// may be a `DEALLOCATE` of one).
pub fn client_header(responses: &mut Responses, tag: u8, names_known: bool) -> Option<Want> {
    let request = match tag {
        message::PARSE | message::BIND | message::DESCRIBE | message::CLOSE => {
            return Some(Want::Whole)
        }
        frontend::QUERY if names_known => return Some(Want::Whole),
        frontend::EXECUTE => Request::Execute,
        frontend::SYNC => Request::Sync,
        frontend::QUERY | frontend::FUNCTION_CALL => Request::Query,
        frontend::COPY_DONE | frontend::COPY_FAIL => {
            responses.copy_in_ended();
            return None;
        }
        _ => return None,
    };
    responses.push(request, Action::Forward, None);
    None
}

/// Client side, a whole Parse/Bind/Describe/Close: unnamed ones pass with
/// their entry; named (or malformed) ones are taken for the rewriter.
pub fn client_message(responses: &mut Responses, tag: u8, body: &[u8]) -> Flow {
    let unnamed = match tag {
        message::PARSE => Parse::decode(body)
            .ok()
            .filter(|p| p.name.is_empty())
            .map(|_| Request::Parse),
        message::BIND => Bind::decode(body)
            .ok()
            .filter(|b| b.statement.is_empty())
            .map(|_| Request::Bind),
        message::DESCRIBE => Target::decode(body, "Describe")
            .ok()
            .filter(|t| t.kind == PORTAL || t.name.is_empty())
            .map(|t| {
                if t.kind == STATEMENT {
                    Request::DescribeStatement
                } else {
                    Request::DescribePortal
                }
            }),
        message::CLOSE => Target::decode(body, "Close")
            .ok()
            .filter(|t| t.kind == PORTAL || t.name.is_empty())
            .map(|_| Request::Close),
        // Only with nothing in flight does pgwolf know the transaction
        // status its answer must carry; otherwise the server answers.
        frontend::QUERY => {
            (!responses.is_empty() || deallocate::target(body).is_none()).then_some(Request::Query)
        }
        _ => return Flow::Continue,
    };
    match unnamed {
        Some(request) => {
            responses.push(request, Action::Forward, None);
            Flow::Continue
        }
        None => Flow::Take,
    }
}

// Server messages that end an answer or may be hidden: looked at whole
// while requests are in flight, so an answer of pgwolf's can follow them.
// ParameterStatus is whole anyway (the pump reads it): listed so that it
// reaches the queue once, from `server_message`.
const WHOLE: &[u8] = b"123tTnCIsEZS";

/// Server side, at a message header. `None` leaves the decision to the
/// pump's own rules.
pub fn server_header(p: &mut Prepared<'_>, tag: u8) -> Option<Want> {
    if p.responses.is_empty() {
        return None;
    }
    if WHOLE.contains(&tag) {
        return Some(Want::Whole);
    }
    // Rows, notices, COPY traffic: never hidden, never the end of an answer.
    let mut undone = Vec::new();
    p.responses.on_server(tag, &mut undone);
    None
}

/// Server side, a whole message (only while requests are in flight, or a
/// ReadyForQuery/ParameterStatus). `Take` drops it; `StopAfter` lets the
/// pump write pgwolf's answers that are now due.
pub fn server_message(p: &mut Prepared<'_>, tag: u8, body: &[u8]) -> Option<Flow> {
    if p.responses.is_empty() && tag != COMMAND_COMPLETE {
        return None;
    }
    let mut undone: Vec<Undo> = Vec::new();
    let verdict = p.responses.on_server(tag, &mut undone);
    if tag == ERROR_RESPONSE && parse_error_fields(body).code == "42P05" {
        // "already exists": the server has the statement that failed to be
        // prepared, whatever pgwolf's cache believed; keep it known.
        if let Some(first) = undone.first_mut() {
            first.server_forget = None;
        }
    }
    if !undone.is_empty() {
        p.rewriter().undo(undone);
    }
    if tag == COMMAND_COMPLETE && matches!(body, b"DISCARD ALL\0" | b"DEALLOCATE ALL\0") {
        // The server dropped every statement, pgwolf's among them, and the
        // client meant to drop all of its own.
        p.server.clear();
        p.names.clear();
    }
    if verdict == Verdict::Hide {
        return Some(Flow::Take);
    }
    p.responses.answer_due(p.to_client);
    (!p.to_client.is_empty()).then_some(Flow::StopAfter)
}

/// Answers, with no server, named Parse messages followed by a Sync that a
/// client sends between transactions (libpq's `PQprepare`): the statements
/// are only recorded, and prepared on whichever server connection the
/// client is lent when it first uses them (a bad statement's error then
/// comes with that use). Without this a client that prepares on one
/// connection while its process holds a transaction open on another (pgbench
/// `-M prepared` runs `PQprepare` synchronously) waits for a server that the
/// other connection can only give back once the first wait ends.
///
/// Returns ParseComplete per Parse and ReadyForQuery 'I', and removes the
/// batch from `cbuf`; None (nothing changed) for any other batch, including
/// a name already in use (the server must report 42P05).
pub fn answer_idle_parse(
    cbuf: &mut BytesMut,
    names: &mut ClientStatements,
    max_packet: u32,
) -> Option<BytesMut> {
    use crate::prepared::statements::Statement;
    use crate::protocol::frame::{self, HEADER_LEN};
    let mut pos = 0;
    let mut batch: Vec<(&[u8], &[u8])> = Vec::new();
    loop {
        let (tag, len) = frame::header(&cbuf[pos..], max_packet).ok()??;
        if cbuf.len() - pos < len {
            return None;
        }
        let body = &cbuf[pos + HEADER_LEN..pos + len];
        pos += len;
        match tag {
            message::PARSE => {
                let p = Parse::decode(body).ok()?;
                let taken = names.get(p.name).is_some() || batch.iter().any(|(n, _)| *n == p.name);
                if p.name.is_empty() || taken {
                    return None;
                }
                batch.push((p.name, p.definition));
            }
            frontend::SYNC if !batch.is_empty() => break,
            _ => return None,
        }
    }
    let mut out = BytesMut::with_capacity(batch.len() * 5 + 6);
    for (name, definition) in &batch {
        names.define(
            name,
            Statement::new(bytes::Bytes::copy_from_slice(definition)),
        );
        message::complete(&mut out, message::PARSE_COMPLETE);
    }
    out.extend_from_slice(&[crate::protocol::backend::READY_FOR_QUERY, 0, 0, 0, 5, b'I']);
    drop(batch);
    bytes::Buf::advance(cbuf, pos);
    Some(out)
}

/// Answers, with no server, a simple Query that is a `DEALLOCATE` of one of
/// the client's names (see [`deallocate`]), between transactions; removes
/// it from `cbuf`. None for anything else.
pub fn answer_idle_deallocate(
    cbuf: &mut BytesMut,
    names: &mut ClientStatements,
    max_packet: u32,
) -> Option<BytesMut> {
    use crate::protocol::frame::{self, HEADER_LEN};
    let (tag, len) = frame::header(cbuf, max_packet).ok()??;
    if tag != frontend::QUERY || cbuf.len() < len {
        return None;
    }
    let mut out = BytesMut::new();
    if !deallocate::answer(names, &cbuf[HEADER_LEN..len], b'I', &mut out) {
        return None;
    }
    bytes::Buf::advance(cbuf, len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, query: &str) -> BytesMut {
        let mut def = query.as_bytes().to_vec();
        def.extend_from_slice(b"\0\0\0");
        let mut m = BytesMut::new();
        Parse::encode(&mut m, name.as_bytes(), &def);
        m
    }

    fn batch(parts: &[BytesMut]) -> BytesMut {
        let mut b = BytesMut::new();
        for p in parts {
            b.extend_from_slice(p);
        }
        b
    }

    const SYNC: &[u8] = b"S\0\0\0\x04";

    #[test]
    fn prepares_between_transactions_are_answered_without_a_server() {
        let mut names = ClientStatements::default();
        let mut cbuf = batch(&[parse("P_0", "BEGIN"), parse("P_1", "END"), SYNC.into()]);
        cbuf.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
        let out = answer_idle_parse(&mut cbuf, &mut names, 1 << 20).expect("answered");
        assert_eq!(&out[..], b"1\0\0\0\x041\0\0\0\x04Z\0\0\0\x05I");
        assert_eq!(
            &cbuf[..],
            b"Q\0\0\0\x0dSELECT 1\0",
            "the next request stays"
        );
        assert!(names.get(b"P_0").is_some() && names.get(b"P_1").is_some());
    }

    #[test]
    fn anything_else_goes_to_a_server() {
        let mut names = ClientStatements::default();
        for mut cbuf in [
            batch(&[parse("", "SELECT 1"), SYNC.into()]),
            batch(&[parse("a", "SELECT 1")]),
            batch(&[parse("a", "SELECT 1"), parse("a", "SELECT 2"), SYNC.into()]),
            batch(&[
                parse("a", "SELECT 1"),
                BytesMut::from(&b"H\0\0\0\x04"[..]),
                SYNC.into(),
            ]),
            BytesMut::from(SYNC),
        ] {
            let before = cbuf.clone();
            assert!(
                answer_idle_parse(&mut cbuf, &mut names, 1 << 20).is_none(),
                "{before:?}"
            );
            assert_eq!(cbuf, before, "left untouched");
        }
        // A name already in use: the server must say 42P05.
        names.define(
            b"b",
            crate::prepared::statements::Statement::new(bytes::Bytes::from_static(b"x\0\0\0")),
        );
        let mut cbuf = batch(&[parse("b", "SELECT 1"), SYNC.into()]);
        assert!(answer_idle_parse(&mut cbuf, &mut names, 1 << 20).is_none());
    }
}
