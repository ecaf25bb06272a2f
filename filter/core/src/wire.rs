//! Decoding of the proxy-wasm ABI's serialized header maps, without copies or panics:
//! `u32 count`, then `count` pairs of `(u32 name_len, u32 value_len)`, then each name and value
//! followed by a NUL byte.

/// Iterates over the pairs of a serialized header map. Stops at the first inconsistency.
#[derive(Clone)]
pub struct HeaderPairs<'a> {
    buf: &'a [u8],
    index: usize,
    count: usize,
    data: usize,
}

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    let arr = <[u8; 4]>::try_from(bytes).ok()?;
    usize::try_from(u32::from_le_bytes(arr)).ok()
}

impl<'a> HeaderPairs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        let count = u32_at(buf, 0).unwrap_or(0);
        let data = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .unwrap_or(usize::MAX);
        HeaderPairs {
            buf,
            index: 0,
            count,
            data,
        }
    }
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let sizes = 4 + self.index * 8;
        let name_len = u32_at(self.buf, sizes)?;
        let value_len = u32_at(self.buf, sizes + 4)?;
        let name_end = self.data.checked_add(name_len)?;
        let name = self.buf.get(self.data..name_end)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let value = self.buf.get(value_start..value_end)?;
        self.data = value_end.checked_add(1)?;
        self.index += 1;
        // Header names are ASCII; a non-UTF-8 name is skipped, not fatal.
        let name = std::str::from_utf8(name).unwrap_or("");
        Some((name, value))
    }
}

/// Serializes pairs the way the host does (for tests and fuzzing).
pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips() {
        let buf = serialize(&[(":status", b"503"), ("x-bin", b"\xff\x00")]);
        let got: Vec<_> = HeaderPairs::new(&buf).collect();
        assert_eq!(
            got,
            vec![(":status", &b"503"[..]), ("x-bin", &b"\xff\x00"[..])]
        );
    }

    #[test]
    fn truncated_or_lying_buffers_end_the_iteration() {
        let buf = serialize(&[(":status", b"200"), ("a", b"b")]);
        for cut in 0..buf.len() {
            let _ = HeaderPairs::new(&buf[..cut]).count();
        }
        let mut lying = buf.clone();
        lying[0] = 0xff;
        lying[1] = 0xff;
        lying[2] = 0xff;
        lying[3] = 0xff;
        assert_eq!(HeaderPairs::new(&lying).count(), 0);
        assert_eq!(HeaderPairs::new(&[]).count(), 0);
    }
}
