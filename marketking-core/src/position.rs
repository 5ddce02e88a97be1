//! [`WritePosition`]: where a write is in the database's history, for reads that must see it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A point in the primary database's write history: on PostgreSQL, a WAL position (LSN),
/// written as PostgreSQL writes it (`16/B374D848`).
///
/// A store with read replicas records the position after each of its writes
/// ([`VectorStore::write_position`](crate::VectorStore::write_position)); a search given one
/// with [`SearchOptions::consistent_after`](crate::SearchOptions::consistent_after) runs on a
/// replica that has replayed at least that far, or on the primary. Positions from one server
/// (and its replicas) compare in write order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WritePosition(u64);

impl WritePosition {
    /// The position from its 64-bit value (PostgreSQL's `pg_lsn` as a number).
    pub const fn from_u64(value: u64) -> Self {
        WritePosition(value)
    }

    /// The 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WritePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for WritePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WritePosition({self})")
    }
}

impl FromStr for WritePosition {
    type Err = Error;

    /// `hi/lo`, each 1 to 8 hexadecimal digits, as PostgreSQL prints an LSN.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("consistent_after", format!("{s:?} is not a write position (like 16/B374D848)"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(WritePosition((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl Serialize for WritePosition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WritePosition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_as_postgresql_writes_an_lsn() {
        let p = WritePosition::from_u64(0x16_B374_D848);
        assert_eq!(p.to_string(), "16/B374D848");
        assert_eq!("16/B374D848".parse::<WritePosition>().unwrap(), p);
        assert_eq!("0/0".parse::<WritePosition>().unwrap(), WritePosition::default());
        assert!("0/1".parse::<WritePosition>().unwrap() < "1/0".parse::<WritePosition>().unwrap());
        for bad in ["", "16", "16/", "/1", "x/1", "123456789/0", "1/2/3", "-1/0"] {
            let e = bad.parse::<WritePosition>().unwrap_err();
            assert!(e.to_string().contains("consistent_after"), "{bad:?}: {e}");
        }
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<WritePosition>("\"16/B374D848\"").unwrap(), p);
    }
}
