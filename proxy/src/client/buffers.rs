//! Clients' read buffers, recycled through a small stack per thread.
//!
//! A client gives its buffer up whenever it waits for its next request, so
//! that thousands of idle clients hold none. A busy client does that after
//! every transaction, and a 16 KiB malloc and free per transaction cost 625
//! of the proxy's 11,000 user-space instructions per `pgbench -S`
//! transaction (callgrind). The stack is bounded: at most [`KEEP`] buffers
//! per worker thread stay allocated for clients that are not using them.

use super::pump::READ_CHUNK;
use bytes::BytesMut;
use std::cell::RefCell;

/// 32 × 16 KiB: half a MiB per worker thread at most.
const KEEP: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Takes `buf`'s memory away, leaving it empty with no capacity: onto this
/// thread's stack when it is an ordinary read buffer with room, else to the
/// allocator. Whatever `buf` held is discarded.
pub fn release(buf: &mut BytesMut) {
    let mut b = std::mem::take(buf);
    // A buffer grown for one large message is not kept: the stack would
    // then pin that much memory per slot.
    if b.capacity() < READ_CHUNK / 2 || b.capacity() > 2 * READ_CHUNK {
        return;
    }
    b.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(b);
        }
    });
}

/// Makes room for the next read: at least a quarter chunk free.
pub fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() >= READ_CHUNK / 4 {
        return;
    }
    if buf.capacity() == 0 {
        if let Some(b) = FREE.with(|f| f.borrow_mut().pop()) {
            *buf = b;
            if buf.capacity() >= READ_CHUNK / 4 {
                return;
            }
        }
    }
    // On an empty buffer whose start was consumed, this moves the start
    // back rather than allocating.
    buf.reserve(READ_CHUNK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_buffer_is_taken_again_and_the_stack_is_bounded() {
        let mut a = BytesMut::with_capacity(READ_CHUNK);
        a.extend_from_slice(b"leftover");
        let ptr = a.as_ptr();
        release(&mut a);
        assert_eq!(a.capacity(), 0, "the client holds no buffer");
        let mut b = BytesMut::new();
        reserve(&mut b);
        assert_eq!(b.as_ptr(), ptr, "the same memory, reused");
        assert!(b.is_empty(), "nothing of the last client's bytes");

        let mut many: Vec<BytesMut> = (0..KEEP + 10)
            .map(|_| BytesMut::with_capacity(READ_CHUNK))
            .collect();
        for m in &mut many {
            release(m);
        }
        assert_eq!(FREE.with(|f| f.borrow().len()), KEEP);

        // A buffer grown for a large message goes back to the allocator.
        let mut big = BytesMut::with_capacity(8 * READ_CHUNK);
        FREE.with(|f| f.borrow_mut().clear());
        release(&mut big);
        assert_eq!(FREE.with(|f| f.borrow().len()), 0);
    }
}
