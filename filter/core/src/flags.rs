//! Envoy's core response flags as `response.flags` exposes them: a bitmask where bit *n* is
//! `CoreResponseFlag` *n* (Envoy 1.40, 30 flags). The order below is Envoy's enum order.

/// One core response flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    LH,
    UH,
    UT,
    LR,
    UR,
    UF,
    UC,
    UO,
    NR,
    DI,
    FI,
    RL,
    UAEX,
    RLSE,
    DC,
    URX,
    SI,
    IH,
    DPE,
    UMSDR,
    RFCF,
    NFCF,
    DT,
    UPE,
    NC,
    OM,
    DF,
    DO,
    DR,
    UDO,
}

/// Every flag with its short and long name, indexed by bit position.
pub const FLAGS: [(Flag, &str, &str); 30] = [
    (Flag::LH, "LH", "FailedLocalHealthCheck"),
    (Flag::UH, "UH", "NoHealthyUpstream"),
    (Flag::UT, "UT", "UpstreamRequestTimeout"),
    (Flag::LR, "LR", "LocalReset"),
    (Flag::UR, "UR", "UpstreamRemoteReset"),
    (Flag::UF, "UF", "UpstreamConnectionFailure"),
    (Flag::UC, "UC", "UpstreamConnectionTermination"),
    (Flag::UO, "UO", "UpstreamOverflow"),
    (Flag::NR, "NR", "NoRouteFound"),
    (Flag::DI, "DI", "DelayInjected"),
    (Flag::FI, "FI", "FaultInjected"),
    (Flag::RL, "RL", "RateLimited"),
    (Flag::UAEX, "UAEX", "UnauthorizedExternalService"),
    (Flag::RLSE, "RLSE", "RateLimitServiceError"),
    (Flag::DC, "DC", "DownstreamConnectionTermination"),
    (Flag::URX, "URX", "UpstreamRetryLimitExceeded"),
    (Flag::SI, "SI", "StreamIdleTimeout"),
    (Flag::IH, "IH", "InvalidEnvoyRequestHeaders"),
    (Flag::DPE, "DPE", "DownstreamProtocolError"),
    (Flag::UMSDR, "UMSDR", "UpstreamMaxStreamDurationReached"),
    (Flag::RFCF, "RFCF", "ResponseFromCacheFilter"),
    (Flag::NFCF, "NFCF", "NoFilterConfigFound"),
    (Flag::DT, "DT", "DurationTimeout"),
    (Flag::UPE, "UPE", "UpstreamProtocolError"),
    (Flag::NC, "NC", "NoClusterFound"),
    (Flag::OM, "OM", "OverloadManagerTerminated"),
    (Flag::DF, "DF", "DnsResolutionFailed"),
    (Flag::DO, "DO", "DropOverload"),
    (Flag::DR, "DR", "DownstreamRemoteReset"),
    (Flag::UDO, "UDO", "UnconditionalDropOverload"),
];

impl Flag {
    /// The bit of this flag in `response.flags`.
    pub const fn mask(self) -> u64 {
        1u64 << (self as u32)
    }

    pub fn short_name(self) -> &'static str {
        FLAGS.get(self as usize).map_or("?", |f| f.1)
    }

    pub fn from_short_name(name: &str) -> Option<Flag> {
        FLAGS.iter().find(|f| f.1 == name).map(|f| f.0)
    }

    /// The flag of a short (`UF`) or long (`UpstreamConnectionFailure`) name, as Envoy's
    /// `%RESPONSE_FLAGS%` and `%RESPONSE_FLAGS_LONG%` print them.
    pub fn from_name(name: &str) -> Option<Flag> {
        FLAGS
            .iter()
            .find(|f| f.1 == name || f.2 == name)
            .map(|f| f.0)
    }

    pub fn long_name(self) -> &'static str {
        FLAGS.get(self as usize).map_or("?", |f| f.2)
    }
}

/// Flags that never make a request failing on their own: an injected delay, a cache hit.
const BENIGN: u64 = Flag::DI.mask() | Flag::RFCF.mask();

/// The `response.flags` bitmask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(pub u64);

impl ResponseFlags {
    pub const fn has(self, flag: Flag) -> bool {
        self.0 & flag.mask() != 0
    }

    pub fn with(self, flag: Flag) -> Self {
        ResponseFlags(self.0 | flag.mask())
    }

    /// Decodes the property value: 8 bytes little-endian (CEL Int64). Anything else is no flags.
    pub fn from_property(bytes: &[u8]) -> Self {
        <[u8; 8]>::try_from(bytes)
            .map_or(ResponseFlags(0), |b| ResponseFlags(u64::from_le_bytes(b)))
    }

    /// Any flag that marks a failure (everything but DI and RFCF).
    pub const fn any_failure(self) -> bool {
        self.0 & !BENIGN != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Flag> {
        FLAGS.iter().map(|f| f.0).filter(move |f| self.has(*f))
    }

    /// Short names comma-joined in bit order (`UF,URX`), as the verdict's `flags` parameter.
    pub fn short_names(self) -> String {
        let mut out = String::new();
        for flag in self.iter() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(flag.short_name());
        }
        out
    }

    /// Parses a list of short names as Envoy prints them (`URX,UF`, or `UF URX`); unknown ones
    /// are ignored.
    pub fn parse_short_names(text: &str) -> Self {
        text.split([',', ' '])
            .filter_map(Flag::from_short_name)
            .fold(ResponseFlags(0), ResponseFlags::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn bit_positions_match_envoy_1_40() {
        assert_eq!(Flag::UF.mask(), 0x20);
        assert_eq!(Flag::UC.mask(), 0x40);
        assert_eq!(Flag::URX.mask(), 0x8000);
        assert_eq!(Flag::UPE.mask(), 0x80_0000);
        assert_eq!(Flag::DR.mask(), 0x1000_0000);
        assert_eq!(Flag::UDO.mask(), 0x2000_0000);
        for (i, f) in FLAGS.iter().enumerate() {
            assert_eq!(f.0 as usize, i, "{} out of order", f.1);
        }
    }

    #[test]
    fn decodes_the_property_and_names_flags_in_bit_order() {
        let flags = ResponseFlags::from_property(&0x8020u64.to_le_bytes());
        assert_eq!(flags.short_names(), "UF,URX");
        assert_eq!(ResponseFlags::from_property(&[1, 2]), ResponseFlags(0));
        assert_eq!(ResponseFlags::parse_short_names("URX,UF"), flags);
        assert_eq!(
            Flag::from_name("UpstreamRetryLimitExceeded"),
            Some(Flag::URX)
        );
        assert_eq!(Flag::from_name("UF"), Some(Flag::UF));
        assert_eq!(Flag::UF.long_name(), "UpstreamConnectionFailure");
        assert_eq!(Flag::from_name("uf"), None);
    }

    #[test]
    fn delay_and_cache_flags_are_not_failures() {
        assert!(!ResponseFlags(Flag::DI.mask()).any_failure());
        assert!(ResponseFlags(Flag::UC.mask()).any_failure());
    }
}
