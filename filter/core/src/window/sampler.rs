//! Which finished requests the window counts (`filter/src/window.rs` asks once per request).

/// Which finished requests the window counts, and with what weight. Counting one costs two
/// host calls (attempt count, cluster name, ~24k Envoy instructions), so under load a worker
/// counts about [`Sampler::PER_SECOND`] requests per second, each chosen at random with
/// probability 1/w and counted w times: the window's sums stay unbiased, the cost per
/// request falls with the rate, and the cost per second stays bounded. Quiet workers (at most
/// `PER_SECOND` requests in the last second) count every request exactly. Random, not every w-th:
/// traffic alternating between clusters must not alias with the period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    seen: u32,
    /// A power of two: 1 counts every request.
    every: u32,
    rng: u32,
    /// The second of the last tick: a VM hosts several plugins, each ticking once a second,
    /// and only the first tick of a second starts a new one.
    second: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    /// Requests per second a busy worker still counts.
    pub const PER_SECOND: u32 = 32;

    pub const fn new() -> Sampler {
        Sampler {
            seen: 0,
            every: 1,
            rng: 0x9E37_79B9,
            second: 0,
        }
    }

    /// The weight of the next finished request: 1 (exact), `w` (sampled) or 0 (skipped).
    pub fn weigh(&mut self) -> u32 {
        self.seen = self.seen.saturating_add(1);
        if self.every <= 1 {
            return 1;
        }
        // xorshift32: cheap, and never 0 from a nonzero seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        if self.rng & (self.every - 1) == 0 {
            self.every
        } else {
            0
        }
    }

    /// A tick at `now_s` (seconds): the first of a second sets the sampling rate from the
    /// rate of the second that ended; later ticks of the same second change nothing.
    pub fn tick(&mut self, now_s: u64) {
        if now_s == self.second {
            return;
        }
        self.second = now_s;
        self.every = if self.seen <= Self::PER_SECOND {
            1
        } else {
            (self.seen / Self::PER_SECOND)
                .next_power_of_two()
                .min(1 << 16)
        };
        self.seen = 0;
    }

    /// The current weight of a sampled request (1: exact).
    pub fn every(&self) -> u32 {
        self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sampler_is_exact_when_quiet_and_bounded_and_unbiased_when_busy() {
        let mut s = Sampler::default();
        // Quiet: every request counted exactly, second after second.
        for second in 1..4 {
            assert!((0..Sampler::PER_SECOND).all(|_| s.weigh() == 1));
            s.tick(second);
            assert_eq!(s.every(), 1);
        }
        // Busy: 10,000 requests in a second, then the same rate again.
        for _ in 0..10_000 {
            s.weigh();
        }
        s.tick(4);
        assert_eq!(s.every(), 512); // 10_000 / 32 = 312 -> 512
                                    // Another plugin's tick in the same second changes nothing.
        s.tick(4);
        assert_eq!(s.every(), 512);
        let weights: Vec<u32> = (0..100_000).map(|_| s.weigh()).collect();
        let counted = weights.iter().filter(|w| **w > 0).count();
        assert!((130..=260).contains(&counted), "{counted}");
        // The weighted sum stands for every request (within a few percent).
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        assert!((80_000..=120_000).contains(&total), "{total}");
        // Alternating traffic (two clusters) is not aliased by the sampling period.
        let even = weights.iter().step_by(2).filter(|w| **w > 0).count();
        assert!(
            even > counted / 4 && even < counted * 3 / 4,
            "{even} of {counted}"
        );
    }
}
