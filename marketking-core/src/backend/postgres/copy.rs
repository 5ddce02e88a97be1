//! Binary COPY rows written into large buffers.
//!
//! Why not tokio-postgres' `BinaryCopyInWriter`: it hands its buffer to the connection whenever
//! it holds more than 4 KiB, so every 1536-dimension row (6 KiB of vector) was one message
//! through the connection's channel and one socket write, and its values must be owned
//! `ToSql` types (a borrowed `&[f32]` had to become a `pgvector::Vector` first, a copy). Here
//! rows go into one buffer that is sent in 1 MiB pieces, scalar fields are still encoded by
//! their `ToSql` impls (the driver's own encoders), and a vector is encoded straight from the
//! caller's slice in pgvector's binary format (`int2` dimensions, `int2` unused, `float4`s, all
//! big-endian: pgvector's `vector_recv`).

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::CopyInSink;

use crate::error::{Error, Result};

/// Bytes gathered before they are sent.
const SEND_AT: usize = 1 << 20;

/// A binary COPY in progress: [`start`](Self::start), rows, then [`finish`](Self::finish).
pub(super) struct CopyRows {
    sink: std::pin::Pin<Box<CopyInSink<Bytes>>>,
    buf: BytesMut,
}

/// One field of a row.
pub(super) enum Field<'a> {
    /// A value the driver encodes, with the column's type.
    Value(&'a (dyn ToSql + Sync), &'a Type),
    /// A `vector` value, encoded from the slice.
    Vector(&'a [f32]),
}

impl CopyRows {
    /// Starts `COPY ... FROM STDIN (FORMAT binary)` on `client` and writes the header.
    pub(super) async fn start(client: &tokio_postgres::Transaction<'_>, sql: &str) -> Result<Self> {
        let sink = client.copy_in::<_, Bytes>(sql).await?;
        let mut buf = BytesMut::with_capacity(SEND_AT + (SEND_AT >> 2));
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        Ok(CopyRows { sink: Box::pin(sink), buf })
    }

    /// Adds one row; sends the buffer when it is full.
    pub(super) async fn row(&mut self, fields: &[Field<'_>]) -> Result<()> {
        let n = i16::try_from(fields.len()).map_err(|_| Error::storage("too many COPY fields"))?;
        self.buf.put_i16(n);
        for f in fields {
            match f {
                Field::Value(v, ty) => {
                    let at = self.buf.len();
                    self.buf.put_i32(0);
                    let null = v
                        .to_sql_checked(ty, &mut self.buf)
                        .map_err(|e| Error::storage(format!("a {ty} value does not encode: {e}")))?;
                    let len = match null {
                        IsNull::Yes => {
                            self.buf.truncate(at + 4);
                            -1
                        }
                        IsNull::No => i32::try_from(self.buf.len() - at - 4)
                            .map_err(|_| Error::storage("a COPY field is over 2 GiB"))?,
                    };
                    if let Some(slot) = self.buf.get_mut(at..at + 4) {
                        slot.copy_from_slice(&len.to_be_bytes());
                    }
                }
                Field::Vector(v) => {
                    let dims = u16::try_from(v.len()).map_err(|_| Error::storage("a vector over 65535 dimensions"))?;
                    self.buf.put_i32(4 + 4 * i32::from(dims));
                    self.buf.put_u16(dims);
                    self.buf.put_u16(0);
                    let start = self.buf.len();
                    self.buf.resize(start + 4 * v.len(), 0);
                    // Byte-swapped in place in one pass (the compiler vectorises it).
                    if let Some(out) = self.buf.get_mut(start..) {
                        for (dst, x) in out.chunks_exact_mut(4).zip(v.iter()) {
                            dst.copy_from_slice(&x.to_be_bytes());
                        }
                    }
                }
            }
        }
        if self.buf.len() >= SEND_AT {
            let chunk = self.buf.split().freeze();
            self.sink.send(chunk).await?;
        }
        Ok(())
    }

    /// Writes the trailer, sends what is left and ends the COPY; the number of rows written.
    pub(super) async fn finish(mut self) -> Result<u64> {
        self.buf.put_i16(-1);
        let chunk = self.buf.split().freeze();
        self.sink.send(chunk).await?;
        Ok(self.sink.as_mut().finish().await?)
    }
}
