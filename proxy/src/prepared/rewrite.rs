//! Client messages as the server connection in hand needs them: named
//! statements renamed to `pgwolf_<id>`, prepared first where this server
//! lacks them, and a client Parse or Close answered by pgwolf where the
//! server need not see it. Every request sent or answered gets its entry in
//! [`Responses`], in order.

use super::message::{self, Bind, Malformed, Parse, Target, CLOSE, DESCRIBE, STATEMENT};
use super::responses::{Action, NameWas, Request, Responses, Undo, ANSWER_CLOSE, ANSWER_PARSE};
use super::statements::{Admit, ClientStatements, Counters, ServerStatements, Statement};
use crate::protocol::frame::HEADER_LEN;
use crate::protocol::frontend;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// The state one rewrite touches, borrowed from the client session and
/// the server connection it holds.
pub struct Rewriter<'a> {
    pub names: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub responses: &'a mut Responses,
    pub counters: &'a Counters,
}

impl Rewriter<'_> {
    /// One whole client message (header included). What the server must
    /// receive is appended to `out`; it may be nothing, or more than the
    /// message (a Parse or an eviction's Close before it).
    pub fn client_message(&mut self, msg: &[u8], out: &mut BytesMut) -> Result<(), Malformed> {
        let (tag, body) = (msg[0], &msg[HEADER_LEN..]);
        match tag {
            message::PARSE => self.parse(msg, Parse::decode(body)?, out),
            message::BIND => {
                let bind = Bind::decode(body)?;
                match self.known(bind.statement) {
                    Some(stmt) => {
                        self.ensure(&stmt, out);
                        bind.encode_as(out, stmt.server_name());
                    }
                    None => out.extend_from_slice(msg),
                }
                self.responses.push(Request::Bind, Action::Forward, None);
            }
            DESCRIBE => {
                let target = Target::decode(body, "Describe")?;
                let request = if target.kind == STATEMENT {
                    Request::DescribeStatement
                } else {
                    Request::DescribePortal
                };
                match self.known_target(target) {
                    Some(stmt) => {
                        self.ensure(&stmt, out);
                        Target::encode(out, DESCRIBE, STATEMENT, stmt.server_name());
                    }
                    None => out.extend_from_slice(msg),
                }
                self.responses.push(request, Action::Forward, None);
            }
            CLOSE => {
                let target = Target::decode(body, "Close")?;
                if target.kind == STATEMENT && !target.name.is_empty() {
                    // The server's copy stays for the next client that
                    // prepares the same statement; only the name goes.
                    let previous = self.names.remove(target.name);
                    let undo = Undo::restore(target.name, previous);
                    self.responses
                        .push(Request::Close, ANSWER_CLOSE, Some(undo));
                } else {
                    out.extend_from_slice(msg);
                    self.responses.push(Request::Close, Action::Forward, None);
                }
            }
            frontend::EXECUTE => self.pass(msg, Request::Execute, out),
            frontend::SYNC => self.pass(msg, Request::Sync, out),
            frontend::QUERY | frontend::FUNCTION_CALL => self.pass(msg, Request::Query, out),
            // Flush, CopyData/Done/Fail: no answer of their own.
            _ => out.extend_from_slice(msg),
        }
        Ok(())
    }

    fn pass(&mut self, msg: &[u8], request: Request, out: &mut BytesMut) {
        out.extend_from_slice(msg);
        self.responses.push(request, Action::Forward, None);
    }

    fn parse(&mut self, msg: &[u8], p: Parse<'_>, out: &mut BytesMut) {
        if p.name.is_empty() {
            return self.pass(msg, Request::Parse, out);
        }
        if let Some(existing) = self.names.get(p.name).cloned() {
            // PostgreSQL refuses to redefine a name (42P05). Let the server
            // say so, about the statement the name already holds.
            self.ensure(&existing, out);
            Parse::encode(out, existing.server_name(), p.definition);
            self.responses.push(Request::Parse, Action::Forward, None);
            return;
        }
        let stmt = Statement::new(Bytes::copy_from_slice(p.definition));
        let previous = self.names.define(p.name, stmt.clone());
        let mut undo = Undo::restore(p.name, previous);
        let admit = self.server.admit(&stmt);
        self.counters.record(&admit);
        match admit {
            Admit::Hit => self
                .responses
                .push(Request::Parse, ANSWER_PARSE, Some(undo)),
            Admit::Miss { evict } => {
                self.evict(evict, out);
                Parse::encode(out, stmt.server_name(), p.definition);
                undo.server_forget = Some(stmt);
                self.responses
                    .push(Request::Parse, Action::Forward, Some(undo));
            }
        }
    }

    /// Makes sure the server has `stmt`, sending a Parse whose answer the
    /// client will not see if it lacks it.
    fn ensure(&mut self, stmt: &Arc<Statement>, out: &mut BytesMut) {
        let admit = self.server.admit(stmt);
        self.counters.record(&admit);
        if let Admit::Miss { evict } = admit {
            self.evict(evict, out);
            Parse::encode(out, stmt.server_name(), &stmt.definition);
            self.responses
                .push(Request::Parse, Action::Hide, Some(Undo::forget(stmt)));
        }
    }

    fn evict(&mut self, evict: Option<Arc<Statement>>, out: &mut BytesMut) {
        if let Some(old) = evict {
            Target::encode(out, CLOSE, STATEMENT, old.server_name());
            self.responses
                .push(Request::Close, Action::Hide, Some(Undo::keep(&old)));
        }
    }

    fn known(&self, name: &[u8]) -> Option<Arc<Statement>> {
        if name.is_empty() {
            return None;
        }
        self.names.get(name).cloned()
    }

    fn known_target(&self, t: Target<'_>) -> Option<Arc<Statement>> {
        (t.kind == STATEMENT).then(|| self.known(t.name)).flatten()
    }

    /// Applies what the server skipped or refused (see [`Responses::on_server`]).
    pub fn undo(&mut self, undone: impl IntoIterator<Item = Undo>) {
        for u in undone {
            if let Some(NameWas { name, previous }) = u.client_name {
                match previous {
                    Some(p) => {
                        self.names.define(&name, p);
                    }
                    None => {
                        self.names.remove(&name);
                    }
                }
            }
            if let Some(s) = u.server_forget {
                self.server.forget(&s);
            }
            if let Some(s) = u.server_keep {
                self.server.keep(&s);
            }
        }
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
