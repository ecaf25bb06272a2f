//! The window table's binary form in proxy-wasm shared data, which every worker of the VM reads
//! and writes once per second (`filter/src/window.rs`). Decoding anything unexpected gives an
//! empty table: fail open.

use super::{cut, Counts, Entry, Layout, Table, FIELDS, MAX_CLUSTERS, MAX_NAME};
use crate::taxonomy::Direction;

const MAGIC: &[u8; 4] = b"MTW1";

impl Table {
    /// `MTW1`, bucket_seconds u32, buckets u32, entries u16, then per entry: dir u8, over u8,
    /// name length u8, name, `buckets` × (epoch u64, 5 × u32). Little endian.
    pub fn encode(&self) -> Vec<u8> {
        let per = 3 + MAX_NAME + self.layout.buckets as usize * (8 + 4 * FIELDS);
        let mut out = Vec::with_capacity(14 + self.entries.len() * per);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.layout.bucket_seconds.to_le_bytes());
        out.extend_from_slice(&self.layout.buckets.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for e in &self.entries {
            out.push(e.dir.index() as u8);
            out.push(u8::from(e.over));
            let name = cut(&e.cluster);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            for (epoch, c) in &e.buckets {
                out.extend_from_slice(&epoch.to_le_bytes());
                for f in c.fields() {
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote. Anything else — garbage, another layout (the
    /// window was reconfigured), too many entries — gives an empty table: fail open.
    pub fn decode(bytes: &[u8], layout: Layout) -> Table {
        Table::try_decode(bytes, layout).unwrap_or_else(|| Table::new(layout))
    }

    fn try_decode(bytes: &[u8], layout: Layout) -> Option<Table> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC || r.u32()? != layout.bucket_seconds || r.u32()? != layout.buckets {
            return None;
        }
        let n = usize::from(r.u16()?);
        if n > MAX_CLUSTERS {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let dir = match r.u8()? {
                0 => Direction::Inbound,
                1 => Direction::Outbound,
                2 => Direction::Unknown,
                _ => return None,
            };
            let over = r.u8()? != 0;
            let len = usize::from(r.u8()?);
            let cluster = std::str::from_utf8(r.take(len)?).ok()?.to_string();
            let mut buckets = Vec::with_capacity(layout.buckets as usize);
            for _ in 0..layout.buckets {
                let epoch = r.u64()?;
                let mut f = [0u32; FIELDS];
                for v in &mut f {
                    *v = r.u32()?;
                }
                buckets.push((epoch, Counts::from_fields(f)));
            }
            entries.push(Entry {
                dir,
                cluster,
                over,
                buckets,
            });
        }
        r.0.is_empty().then_some(Table { layout, entries })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::super::tests::{budget, flush, IN};
    use super::super::{Pending, Table};
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn encoding_round_trips_and_garbage_decodes_empty() {
        let b = budget(0.1, 5, 1);
        let layout = Layout::new(5);
        let mut t = Table::new(layout);
        flush(
            &mut t,
            1000,
            "outbound|80||a.ns.svc",
            3,
            Counts::request(2, true, true),
        );
        let mut p = Pending::default();
        p.record(IN, "inbound|8080||", Counts::request(1, false, false));
        t.merge(1001, &p);
        t.evaluate(1001, &b);
        let bytes = t.encode();
        assert_eq!(Table::decode(&bytes, layout), t);
        // Another window size: start afresh.
        assert!(Table::decode(&bytes, Layout::new(6)).is_empty());
        for cut in 0..bytes.len() {
            assert!(Table::decode(&bytes[..cut], layout).is_empty());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Table::decode(&longer, layout).is_empty());
        let mut bad_dir = bytes.clone();
        bad_dir[14] = 9;
        assert!(Table::decode(&bad_dir, layout).is_empty());
        assert!(Table::decode(b"", layout).is_empty());
    }
}
