//! Result sets of the admin console, all columns text, in the simple
//! query protocol.

use crate::protocol::backend::{message as frame, COMMAND_COMPLETE, DATA_ROW, ROW_DESCRIPTION};
use bytes::{BufMut, BytesMut};

/// Column types as PgBouncer declares them (values are always sent as text).
pub const TEXT: u32 = 25;
pub const INT4: u32 = 23;
pub const NUMERIC: u32 = 1700;

/// Columns all of type text.
pub fn row_description(out: &mut BytesMut, columns: &[&str]) {
    let typed: Vec<(&str, u32)> = columns.iter().map(|c| (*c, TEXT)).collect();
    typed_description(out, &typed);
}

pub fn typed_description(out: &mut BytesMut, columns: &[(&str, u32)]) {
    frame(out, ROW_DESCRIPTION, |b| {
        b.put_u16(columns.len() as u16);
        for (c, oid) in columns {
            b.extend_from_slice(c.as_bytes());
            b.put_u8(0);
            b.put_u32(0); // table oid
            b.put_u16(0); // column number
            b.put_u32(*oid);
            b.put_i16(-1); // type size: variable
            b.put_i32(-1); // type modifier
            b.put_u16(0); // text format
        }
    });
}

/// One row; None is NULL.
pub fn data_row(out: &mut BytesMut, values: &[Option<String>]) {
    frame(out, DATA_ROW, |b| {
        b.put_u16(values.len() as u16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_u32(v.len() as u32);
                    b.extend_from_slice(v.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    frame(out, COMMAND_COMPLETE, |b| {
        b.extend_from_slice(tag.as_bytes());
        b.put_u8(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_and_its_description() {
        let mut out = BytesMut::new();
        row_description(&mut out, &["a"]);
        assert_eq!(
            &out[..],
            b"T\0\0\0\x1a\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"
        );
        out.clear();
        data_row(&mut out, &[Some("x".into()), None]);
        assert_eq!(&out[..], b"D\0\0\0\x0f\0\x02\0\0\0\x01x\xff\xff\xff\xff");
        out.clear();
        command_complete(&mut out, "SHOW");
        assert_eq!(&out[..], b"C\0\0\0\x09SHOW\0");
    }
}
