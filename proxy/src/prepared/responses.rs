//! The order of the server's answers, so pgwolf can answer some requests
//! itself and hide the answers to requests the client never sent.
//!
//! In the extended protocol the server answers every message in order, and
//! after an ErrorResponse it skips every message up to the next Sync. When
//! pgwolf sends a Parse the client did not send (the server connection
//! lacks a statement the client prepared on another one), its ParseComplete
//! must not reach the client; when the client sends a Parse the server
//! already has, pgwolf answers ParseComplete itself, in its place among the
//! server's answers. The queue here holds one entry per request in flight
//! and walks the server's messages through it. It knows nothing of sockets.

use super::statements::Statement;
use crate::protocol::backend::{
    BIND_COMPLETE, CLOSE_COMPLETE, COMMAND_COMPLETE, COPY_IN_RESPONSE, EMPTY_QUERY, ERROR_RESPONSE,
    NO_DATA, PARAMETER_DESCRIPTION, PARSE_COMPLETE, PORTAL_SUSPENDED, READY_FOR_QUERY,
    ROW_DESCRIPTION,
};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;

/// The request an entry stands for: which server messages end its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    /// Describe of a statement: ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// Describe of a portal: RowDescription or NoData.
    DescribePortal,
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
    /// (a COPY in between).
    Execute,
    Close,
    Sync,
    /// Simple query or function call: everything up to ReadyForQuery.
    Query,
}

/// What becomes of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The client sent it: its answer goes to the client.
    Forward,
    /// pgwolf sent it on its own: a success is hidden, an error is shown
    /// (it is the error the client's own next message would have met).
    Hide,
    /// pgwolf answers it with this message (ParseComplete, CloseComplete);
    /// the server never saw it.
    Answer(u8),
}

/// What to put back if the server skips or refuses a request: PostgreSQL
/// would not have run it, so neither its effect on the client's names nor
/// its effect on what the server holds took place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    /// The client's name goes back to what it named before.
    pub client_name: Option<NameWas>,
    /// The server does not have this statement after all (a Parse failed).
    pub server_forget: Option<Arc<Statement>>,
    /// The server still has this statement (a Close for eviction was skipped).
    pub server_keep: Option<Arc<Statement>>,
}

/// A client's statement name and what it named before a Parse or Close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameWas {
    pub name: Box<[u8]>,
    pub previous: Option<Arc<Statement>>,
}

impl Undo {
    pub fn forget(stmt: &Arc<Statement>) -> Self {
        Undo {
            server_forget: Some(stmt.clone()),
            ..Undo::default()
        }
    }

    pub fn keep(stmt: &Arc<Statement>) -> Self {
        Undo {
            server_keep: Some(stmt.clone()),
            ..Undo::default()
        }
    }

    pub fn restore(name: &[u8], previous: Option<Arc<Statement>>) -> Self {
        Undo {
            client_name: Some(NameWas {
                name: name.into(),
                previous,
            }),
            ..Undo::default()
        }
    }
}

#[derive(Debug)]
struct Entry {
    request: Request,
    action: Action,
    undo: Option<Undo>,
    /// A statement Describe has seen its ParameterDescription.
    seen_parameters: bool,
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Hide,
}

#[derive(Debug, Default)]
pub struct Responses {
    queue: VecDeque<Entry>,
    /// The head Execute started a COPY FROM STDIN (CopyInResponse seen).
    in_copy: bool,
    /// That COPY failed before the client ended it: the Execute is gone
    /// from the queue, the Syncs sent during copy-in mode are at its head.
    copy_failed: bool,
    /// Entries of the queue pgwolf answers itself ([`Action::Answer`]).
    answers: usize,
}

impl Responses {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Requests sent to the server whose answers have not all come back
    /// (pgwolf's own answers waiting their turn not counted: the server
    /// owes nothing for them, so they must not hold a client back).
    pub fn awaiting_server(&self) -> usize {
        self.queue.len() - self.answers
    }

    /// Empties the queue, keeping its allocation for the next transaction.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_copy = false;
        self.copy_failed = false;
        self.answers = 0;
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.queue.pop_front()?;
        if matches!(e.action, Action::Answer(_)) {
            self.answers -= 1;
        }
        Some(e)
    }

    /// A request was sent to the server (or, for [`Action::Answer`], is
    /// answered by pgwolf in its turn).
    pub fn push(&mut self, request: Request, action: Action, undo: Option<Undo>) {
        if matches!(action, Action::Answer(_)) {
            self.answers += 1;
        }
        self.queue.push_back(Entry {
            request,
            action,
            undo,
            seen_parameters: false,
        });
    }

    /// Writes pgwolf's own answers that are next in line: those with no
    /// server answer pending before them. Call after every push and every
    /// server message.
    pub fn answer_due(&mut self, out: &mut BytesMut) {
        while let Some(Entry {
            action: Action::Answer(tag),
            ..
        }) = self.queue.front()
        {
            super::message::complete(out, *tag);
            self.pop_front();
        }
    }

    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail): the server
    /// ignored the Syncs it sent during copy-in mode, so none will be
    /// answered.
    pub fn copy_in_ended(&mut self) {
        let first_sync = match self.queue.front().map(|e| e.request) {
            Some(Request::Execute) => 1,
            // The server reported the COPY's error first; it then ignored
            // those Syncs as well and waits for the next one.
            _ if self.copy_failed => 0,
            _ => return,
        };
        while self.queue.get(first_sync).map(|e| e.request) == Some(Request::Sync) {
            self.queue.remove(first_sync);
        }
        self.in_copy = false;
        self.copy_failed = false;
    }

    /// One server message, by tag. Undo records of requests the server
    /// refused or skipped are appended to `undone`.
    pub fn on_server(&mut self, tag: u8, undone: &mut Vec<Undo>) -> Verdict {
        let Some(head) = self.queue.front_mut() else {
            return Verdict::Forward;
        };
        if head.request == Request::Execute && tag == COPY_IN_RESPONSE {
            self.in_copy = true;
        }
        let ends = match (head.request, tag) {
            // Simple protocol: an error is part of the answer, which ends at
            // ReadyForQuery.
            (Request::Query, READY_FOR_QUERY) => true,
            (Request::Query, _) => false,
            (_, ERROR_RESPONSE) => {
                self.fail(undone);
                return Verdict::Forward;
            }
            (Request::Sync, READY_FOR_QUERY) => true,
            (Request::Parse, PARSE_COMPLETE) => true,
            (Request::Bind, BIND_COMPLETE) => true,
            (Request::Close, CLOSE_COMPLETE) => true,
            (Request::DescribeStatement, PARAMETER_DESCRIPTION) => {
                head.seen_parameters = true;
                false
            }
            (Request::DescribeStatement, ROW_DESCRIPTION | NO_DATA) => head.seen_parameters,
            (Request::DescribePortal, ROW_DESCRIPTION | NO_DATA) => true,
            (Request::Execute, COMMAND_COMPLETE | EMPTY_QUERY | PORTAL_SUSPENDED) => true,
            // Notices, notifications, ParameterStatus, rows, COPY traffic.
            _ => false,
        };
        let verdict = match head.action {
            Action::Hide if is_answer_of(head.request, tag) => Verdict::Hide,
            _ => Verdict::Forward,
        };
        if ends {
            self.pop_front();
        }
        verdict
    }

    /// The head request failed: it and every request up to the next Sync
    /// are undone; the server answers none of them. pgwolf's own pending
    /// answers in that range are dropped too, as the server would have
    /// skipped those messages.
    fn fail(&mut self, undone: &mut Vec<Undo>) {
        self.copy_failed = std::mem::take(&mut self.in_copy);
        while let Some(e) = self.queue.front() {
            if e.request == Request::Sync {
                return;
            }
            let e = self.pop_front().expect("front exists");
            undone.extend(e.undo);
        }
    }
}

/// Whether `tag` is part of the answer proper (not a notice or a
/// ParameterStatus, which reach the client whoever asked).
fn is_answer_of(request: Request, tag: u8) -> bool {
    match request {
        Request::Parse => tag == PARSE_COMPLETE,
        Request::Close => tag == CLOSE_COMPLETE,
        Request::Bind => tag == BIND_COMPLETE,
        Request::DescribeStatement => {
            matches!(tag, PARAMETER_DESCRIPTION | ROW_DESCRIPTION | NO_DATA)
        }
        Request::DescribePortal => matches!(tag, ROW_DESCRIPTION | NO_DATA),
        // pgwolf never hides these.
        Request::Execute | Request::Sync | Request::Query => false,
    }
}

/// [`Action::Answer`] values.
pub const ANSWER_PARSE: Action = Action::Answer(PARSE_COMPLETE);
pub const ANSWER_CLOSE: Action = Action::Answer(CLOSE_COMPLETE);

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const NOTICE: u8 = b'N';
    const DATA_ROW: u8 = b'D';

    /// pgwolf's own answers do not count as owed by the server, through
    /// their answering and through an error that drops them.
    #[test]
    fn awaiting_server_leaves_out_pgwolf_s_own_answers() {
        let mut r = Responses::default();
        r.push(Request::Parse, Action::Forward, None);
        for _ in 0..3 {
            r.push(Request::Parse, ANSWER_PARSE, None);
        }
        r.push(Request::Sync, Action::Forward, None);
        assert_eq!(r.awaiting_server(), 2);
        let mut undone = Vec::new();
        let seen = feed(&mut r, &[PARSE_COMPLETE], &mut undone);
        assert_eq!(seen, [PARSE_COMPLETE; 4]);
        assert_eq!(r.awaiting_server(), 1);
        feed(&mut r, &[READY_FOR_QUERY], &mut undone);
        assert_eq!((r.awaiting_server(), r.is_empty()), (0, true));

        r.push(Request::Parse, Action::Forward, None);
        r.push(Request::Parse, ANSWER_PARSE, None);
        r.push(Request::Sync, Action::Forward, None);
        feed(&mut r, &[ERROR_RESPONSE], &mut undone);
        assert_eq!(r.awaiting_server(), 1, "only the Sync is left");
        feed(&mut r, &[READY_FOR_QUERY], &mut undone);
        assert_eq!(r.awaiting_server(), 0);
    }

    /// Feeds server tags; returns the tags the client sees, pgwolf's own
    /// answers included, in order.
    fn feed(r: &mut Responses, tags: &[u8], undone: &mut Vec<Undo>) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut out = BytesMut::new();
        r.answer_due(&mut out);
        seen.extend(out.iter().step_by(5));
        for &t in tags {
            if r.on_server(t, undone) == Verdict::Forward {
                seen.push(t);
            }
            let mut out = BytesMut::new();
            r.answer_due(&mut out);
            seen.extend(out.iter().step_by(5));
        }
        seen
    }

    fn stmt() -> Arc<Statement> {
        Statement::new(Bytes::from_static(b"SELECT 1\0\0\0"))
    }

    #[test]
    fn hidden_parse_before_the_clients_bind() {
        let mut r = Responses::default();
        r.push(Request::Parse, Action::Hide, Some(Undo::forget(&stmt())));
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        let seen = feed(&mut r, b"12DCZ", &mut undone);
        assert_eq!(seen, b"2DCZ");
        assert!(undone.is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn own_parse_complete_waits_for_earlier_answers() {
        let mut r = Responses::default();
        // An unnamed query still running, then a Parse pgwolf answers.
        r.push(Request::Parse, Action::Forward, None);
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(Request::Parse, ANSWER_PARSE, None);
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        let seen = feed(&mut r, b"12DDC2DCZ", &mut undone);
        assert_eq!(seen, b"12DDC12DCZ");
        assert!(r.is_empty());
    }

    #[test]
    fn own_answer_first_in_line_goes_out_at_once() {
        let mut r = Responses::default();
        r.push(Request::Parse, ANSWER_PARSE, None);
        r.push(Request::Close, ANSWER_CLOSE, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        assert_eq!(feed(&mut r, b"", &mut undone), b"13");
        assert_eq!(feed(&mut r, b"Z", &mut undone), b"Z");
    }

    #[test]
    fn error_skips_to_sync_and_undoes_what_the_server_skipped() {
        let mut r = Responses::default();
        let s = stmt();
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(
            Request::Parse,
            ANSWER_PARSE,
            Some(Undo::restore(b"S_2", None)),
        );
        r.push(Request::Parse, Action::Hide, Some(Undo::forget(&s)));
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        // The first Execute fails; the server skips to the first Sync and
        // then serves the second batch.
        let seen = feed(&mut r, b"2EZ2Z", &mut undone);
        assert_eq!(seen, b"2EZ2Z", "no ParseComplete for a skipped Parse");
        assert_eq!(undone, vec![Undo::restore(b"S_2", None), Undo::forget(&s)]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_hidden_parse_that_fails_shows_its_error() {
        let mut r = Responses::default();
        let s = stmt();
        r.push(Request::Parse, Action::Hide, Some(Undo::forget(&s)));
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        assert_eq!(feed(&mut r, b"EZ", &mut undone), b"EZ");
        assert_eq!(undone, vec![Undo::forget(&s)]);
    }

    #[test]
    fn describe_statement_ends_after_row_description() {
        let mut r = Responses::default();
        r.push(Request::Parse, Action::Hide, None);
        r.push(Request::DescribeStatement, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        assert_eq!(feed(&mut r, b"1tTZ", &mut undone), b"tTZ");
        let mut r = Responses::default();
        r.push(Request::DescribeStatement, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        assert_eq!(feed(&mut r, b"tnZ", &mut undone), b"tnZ");
        assert!(r.is_empty());
    }

    #[test]
    fn notices_pass_whoever_asked() {
        let mut r = Responses::default();
        r.push(Request::Parse, Action::Hide, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        assert_eq!(
            feed(&mut r, &[NOTICE, PARSE_COMPLETE, b'Z'], &mut undone),
            b"NZ"
        );
    }

    #[test]
    fn simple_query_errors_are_part_of_its_answer() {
        let mut r = Responses::default();
        r.push(Request::Query, Action::Forward, None);
        r.push(Request::Parse, ANSWER_PARSE, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        // Query's error does not skip the later extended-protocol batch.
        let seen = feed(&mut r, &[b'T', DATA_ROW, b'E', b'Z', b'Z'], &mut undone);
        assert_eq!(seen, b"TDEZ1Z");
        assert!(undone.is_empty());
    }

    #[test]
    fn syncs_sent_during_copy_in_are_not_waited_for() {
        let mut r = Responses::default();
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        assert_eq!(feed(&mut r, b"2G", &mut undone), b"2G");
        // The client pipelined a Sync before its data, then CopyDone and
        // a Sync of its own.
        r.copy_in_ended();
        r.push(Request::Sync, Action::Forward, None);
        assert_eq!(feed(&mut r, b"CZ", &mut undone), b"CZ");
        assert!(r.is_empty());
    }

    #[test]
    fn a_copy_that_fails_before_copy_done_leaves_no_stale_sync() {
        let mut r = Responses::default();
        r.push(Request::Parse, Action::Forward, None);
        r.push(Request::Bind, Action::Forward, None);
        r.push(Request::Execute, Action::Forward, None);
        r.push(Request::Sync, Action::Forward, None);
        let mut undone = Vec::new();
        // Bad data: the server errors during copy-in, before CopyDone.
        assert_eq!(feed(&mut r, b"12GE", &mut undone), b"12GE");
        r.copy_in_ended();
        r.push(Request::Sync, Action::Forward, None);
        assert_eq!(feed(&mut r, b"Z", &mut undone), b"Z");
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn without_entries_everything_passes() {
        let mut r = Responses::default();
        let mut undone = Vec::new();
        assert_eq!(feed(&mut r, b"T1D2CEZ", &mut undone), b"T1D2CEZ");
    }
}
