//! Framing: find message boundaries in a byte stream without decoding.
//!
//! A message is `tag u8 + len i32 (counting itself) + body`. The [`Scanner`]
//! walks a buffer and tells the caller how many bytes may be forwarded. Only
//! the messages an [`Inspect`] asks for are held whole; every other message is
//! streamed through as its bytes arrive, so a 100 MB DataRow never needs
//! 100 MB of buffer.

use bytes::BytesMut;

/// Tag byte plus length field.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid message length {len} for message type {tag:#04x}")]
    BadLength { tag: u8, len: u32 },
    #[error("message of {len} bytes exceeds max_packet_size ({max})")]
    TooLarge { len: u32, max: u32 },
}

/// What the scanner should do with the message whose header it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Stream it through without looking at the body.
    Pass,
    /// Hold it until complete and show it to [`Inspect::message`].
    Whole,
    /// Stop before this message; it is left unconsumed in the buffer.
    StopBefore,
}

/// What to do after a whole message was inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop after this message (it is consumed and forwarded).
    StopAfter,
    /// Stop; this message is the caller's, not to be forwarded: it lies in
    /// the buffer right after the ready bytes ([`Scanned::taken`] long).
    Take,
}

/// The direction-specific part of scanning: which tags matter.
///
/// `header` is called once for a streamed message, but may be called again
/// for a `Whole` message until all of it has arrived: keep side effects for
/// such tags in `message`.
pub trait Inspect {
    fn header(&mut self, tag: u8, len: usize) -> Want;
    fn message(&mut self, tag: u8, body: &[u8]) -> Flow;
}

/// Result of one [`Scanner::scan`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes from the start of the buffer that may be forwarded.
    pub ready: usize,
    /// The inspector asked to stop (before or after a message).
    pub stopped: bool,
    /// Length of a message taken with [`Flow::Take`], right after the
    /// ready bytes. The caller removes it and reports it consumed.
    pub taken: usize,
}

/// Remembers how much of a streamed message is still to come across reads.
#[derive(Debug, Default, Clone)]
pub struct Scanner {
    /// Body bytes of the current pass-through message not yet seen.
    remaining: usize,
    /// Byte offset in the stream where scanning resumes: bytes before it in
    /// the caller's buffer were already judged ready.
    pending: usize,
}

impl Scanner {
    pub fn new() -> Self {
        Scanner::default()
    }

    /// True when the scanner is between messages (no partial message seen).
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Scans `buf` from where the last call stopped. Bytes already reported
    /// ready stay ready until the caller calls [`Scanner::consumed`].
    pub fn scan<I: Inspect>(
        &mut self,
        buf: &[u8],
        max_len: u32,
        inspect: &mut I,
    ) -> Result<Scanned, FrameError> {
        let mut pos = self.pending;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min(buf.len() - pos);
                self.remaining -= take;
                pos += take;
                if self.remaining > 0 {
                    break;
                }
                continue;
            }
            let Some((tag, len)) = header(&buf[pos..], max_len)? else {
                break;
            };
            match inspect.header(tag, len) {
                Want::Pass => {
                    self.remaining = len - HEADER_LEN;
                    pos += HEADER_LEN;
                }
                Want::StopBefore => {
                    self.pending = pos;
                    return Ok(Scanned {
                        ready: pos,
                        stopped: true,
                        taken: 0,
                    });
                }
                Want::Whole => {
                    if buf.len() - pos < len {
                        break;
                    }
                    let flow = inspect.message(tag, &buf[pos + HEADER_LEN..pos + len]);
                    match flow {
                        Flow::Continue => pos += len,
                        Flow::StopAfter => {
                            self.pending = pos + len;
                            return Ok(Scanned {
                                ready: pos + len,
                                stopped: true,
                                taken: 0,
                            });
                        }
                        Flow::Take => {
                            self.pending = pos + len;
                            return Ok(Scanned {
                                ready: pos,
                                stopped: true,
                                taken: len,
                            });
                        }
                    }
                }
            }
        }
        self.pending = pos;
        Ok(Scanned {
            ready: pos,
            stopped: false,
            taken: 0,
        })
    }

    /// The caller removed `n` ready bytes from the front of its buffer.
    pub fn consumed(&mut self, n: usize) {
        debug_assert!(n <= self.pending);
        self.pending -= n;
    }

    /// Forget all state (the buffer was discarded).
    pub fn reset(&mut self) {
        *self = Scanner::default();
    }
}

/// Reads a header: `Some((tag, total_len))` where total_len includes the tag,
/// `None` when fewer than five bytes are there.
pub fn header(buf: &[u8], max_len: u32) -> Result<Option<(u8, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len > i32::MAX as u32 {
        return Err(FrameError::BadLength { tag, len });
    }
    if len > max_len {
        return Err(FrameError::TooLarge { len, max: max_len });
    }
    Ok(Some((tag, len as usize + 1)))
}

/// Splits one whole message off the front of `buf`: `(tag, body)`, or
/// `None` when incomplete. For login-time exchanges, not the hot path.
pub fn split_message(
    buf: &mut BytesMut,
    max_len: u32,
) -> Result<Option<(u8, BytesMut)>, FrameError> {
    let Some((tag, len)) = header(buf, max_len)? else {
        return Ok(None);
    };
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut msg = buf.split_to(len);
    let body = msg.split_off(HEADER_LEN);
    Ok(Some((tag, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Holds 'Z' whole, stops before 'X', passes the rest.
    #[derive(Default)]
    struct Rec {
        headers: Vec<u8>,
        whole: Vec<(u8, Vec<u8>)>,
    }

    impl Inspect for Rec {
        fn header(&mut self, tag: u8, _len: usize) -> Want {
            self.headers.push(tag);
            match tag {
                b'Z' => Want::Whole,
                b'X' => Want::StopBefore,
                _ => Want::Pass,
            }
        }
        fn message(&mut self, tag: u8, body: &[u8]) -> Flow {
            self.whole.push((tag, body.to_vec()));
            Flow::Continue
        }
    }

    #[test]
    fn streams_pass_through_and_holds_whole() {
        let mut stream = msg(b'D', &[7u8; 100]);
        stream.extend(msg(b'Z', b"I"));
        let mut sc = Scanner::new();
        let mut rec = Rec::default();
        // Feed byte by byte: every prefix must be handled.
        let mut buf: Vec<u8> = Vec::new();
        let mut forwarded = 0;
        for b in &stream {
            buf.push(*b);
            let s = sc.scan(&buf, 1 << 20, &mut rec).unwrap();
            buf.drain(..s.ready);
            sc.consumed(s.ready);
            forwarded += s.ready;
        }
        assert_eq!(forwarded, stream.len());
        // 'Z' is 6 bytes: its header is read at 5 bytes (incomplete) and at 6.
        assert_eq!(rec.headers, vec![b'D', b'Z', b'Z']);
        assert_eq!(rec.whole, vec![(b'Z', b"I".to_vec())]);
    }

    #[test]
    fn header_seen_once_when_whole_message_complete() {
        let mut stream = msg(b'C', b"SELECT 1\0");
        stream.extend(msg(b'Z', b"T"));
        let mut sc = Scanner::new();
        let mut rec = Rec::default();
        let s = sc.scan(&stream, 1 << 20, &mut rec).unwrap();
        assert_eq!(s.ready, stream.len());
        assert_eq!(rec.headers, vec![b'C', b'Z']);
    }

    #[test]
    fn stop_before_leaves_message() {
        let mut stream = msg(b'Q', b"select 1\0");
        let q = stream.len();
        stream.extend(msg(b'X', b""));
        let mut sc = Scanner::new();
        let s = sc.scan(&stream, 1 << 20, &mut Rec::default()).unwrap();
        assert_eq!(
            s,
            Scanned {
                ready: q,
                stopped: true,
                taken: 0
            }
        );
    }

    /// Takes every 'P' whole; passes the rest.
    struct Taker;
    impl Inspect for Taker {
        fn header(&mut self, tag: u8, _len: usize) -> Want {
            if tag == b'P' {
                Want::Whole
            } else {
                Want::Pass
            }
        }
        fn message(&mut self, _tag: u8, _body: &[u8]) -> Flow {
            Flow::Take
        }
    }

    #[test]
    fn take_leaves_the_message_after_the_ready_bytes() {
        let mut stream = msg(b'B', b"xy");
        let b = stream.len();
        let p = msg(b'P', b"name\0");
        stream.extend(&p);
        stream.extend(msg(b'S', b""));
        let mut buf = stream.clone();
        let mut sc = Scanner::new();
        let s = sc.scan(&buf, 1 << 20, &mut Taker).unwrap();
        assert_eq!((s.ready, s.stopped, s.taken), (b, true, p.len()));
        // The caller forwards the ready bytes, then removes the taken ones.
        buf.drain(..s.ready);
        sc.consumed(s.ready);
        assert_eq!(&buf[..s.taken], &p[..]);
        buf.drain(..s.taken);
        sc.consumed(s.taken);
        let s = sc.scan(&buf, 1 << 20, &mut Taker).unwrap();
        assert_eq!((s.ready, s.stopped, s.taken), (5, false, 0));
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let bad = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            Scanner::new().scan(&bad, 1 << 20, &mut Rec::default()),
            Err(FrameError::BadLength { .. })
        ));
        let big = [b'Q', 0, 0x10, 0, 0];
        assert!(matches!(
            Scanner::new().scan(&big, 1024, &mut Rec::default()),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn split_message_waits_for_whole() {
        let m = msg(b'R', &[0, 0, 0, 0]);
        let mut buf = BytesMut::from(&m[..6]);
        assert!(split_message(&mut buf, 1024).unwrap().is_none());
        buf.extend_from_slice(&m[6..]);
        let (tag, body) = split_message(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((tag, &body[..]), (b'R', &[0u8, 0, 0, 0][..]));
        assert!(buf.is_empty());
    }
}
