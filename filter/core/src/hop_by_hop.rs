//! Hop-by-hop headers in an upstream response. They belong to one connection and should never
//! be forwarded; an app that copies another response's headers (Feign/Spring pass-through)
//! forwards them. The label set is fixed so metrics stay bounded.

/// One hop-by-hop header kind (a metric label value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HopHeader {
    Connection,
    ProxyConnection,
    KeepAlive,
    Upgrade,
    Te,
    Trailer,
    /// A header nominated by `Connection: …` (other than keep-alive/close).
    Nominated,
}

/// Every kind with its label, in bit order.
pub const HOP_HEADERS: [(HopHeader, &str); 7] = [
    (HopHeader::Connection, "connection"),
    (HopHeader::ProxyConnection, "proxy-connection"),
    (HopHeader::KeepAlive, "keep-alive"),
    (HopHeader::Upgrade, "upgrade"),
    (HopHeader::Te, "te"),
    (HopHeader::Trailer, "trailer"),
    (HopHeader::Nominated, "nominated"),
];

impl HopHeader {
    pub fn label(self) -> &'static str {
        HOP_HEADERS.get(self as usize).map_or("", |h| h.1)
    }
}

/// The set of hop-by-hop headers seen on one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HopByHop {
    bits: u8,
    /// `Connection` carried only `keep-alive`/`close`: ordinary HTTP/1.1 from an app talking
    /// straight to the proxy, not evidence of copied headers.
    plain_connection: bool,
}

impl HopByHop {
    pub fn insert(&mut self, h: HopHeader) {
        self.bits |= 1 << (h as u8);
    }

    pub fn contains(self, h: HopHeader) -> bool {
        self.bits & (1 << (h as u8)) != 0
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    pub fn iter(self) -> impl Iterator<Item = HopHeader> {
        HOP_HEADERS
            .iter()
            .map(|h| h.0)
            .filter(move |h| self.contains(*h))
    }

    /// Worth a `hop_by_hop_headers` hint: anything beyond what an HTTP/1.1 app legitimately
    /// sends itself - a plain `Connection: keep-alive|close`, or `Trailer` announcing trailers.
    pub fn suspicious(self) -> bool {
        let benign = (1 << (HopHeader::Connection as u8)) | (1 << (HopHeader::Trailer as u8));
        self.bits & !benign != 0 || (self.contains(HopHeader::Connection) && !self.plain_connection)
    }

    /// Records one response header (lowercase name). `status` decides whether `upgrade` is legit.
    pub fn observe(&mut self, name: &str, value: &[u8], status: Option<u16>) {
        match name {
            "connection" => {
                self.insert(HopHeader::Connection);
                let mut plain = true;
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"keep-alive")
                        || token.eq_ignore_ascii_case(b"close")
                    {
                        continue;
                    }
                    plain = false;
                    if !token.is_empty() {
                        self.insert(HopHeader::Nominated);
                    }
                }
                self.plain_connection = plain;
            }
            "proxy-connection" => self.insert(HopHeader::ProxyConnection),
            "keep-alive" => self.insert(HopHeader::KeepAlive),
            "upgrade" if status != Some(101) => self.insert(HopHeader::Upgrade),
            "te" => self.insert(HopHeader::Te),
            "trailer" => self.insert(HopHeader::Trailer),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn plain_keep_alive_is_counted_but_not_suspicious() {
        let mut h = HopByHop::default();
        h.observe("connection", b"keep-alive", Some(200));
        assert!(h.contains(HopHeader::Connection));
        assert!(!h.suspicious());
    }

    #[test]
    fn nominated_headers_and_te_are_suspicious() {
        let mut h = HopByHop::default();
        h.observe("connection", b"keep-alive, X-Hop-Named", Some(200));
        assert!(h.contains(HopHeader::Nominated));
        assert!(h.suspicious());
        let mut t = HopByHop::default();
        t.observe("te", b"trailers", Some(503));
        assert!(t.suspicious());
        let mut grpc = HopByHop::default();
        grpc.observe("trailer", b"grpc-status", Some(200));
        assert!(grpc.contains(HopHeader::Trailer) && !grpc.suspicious());
    }

    #[test]
    fn upgrade_on_101_is_legitimate() {
        let mut h = HopByHop::default();
        h.observe("upgrade", b"websocket", Some(101));
        assert!(h.is_empty());
        h.observe("upgrade", b"h2c", Some(200));
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![HopHeader::Upgrade]);
    }
}
