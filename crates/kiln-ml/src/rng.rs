//! A small seeded random number generator ([`Rng`], xoshiro256** seeded by SplitMix64).
//!
//! Written here rather than taken from a crate so that the stream for a given seed never
//! changes under us: model files must be bit-identical for the same seed and data.

/// One step of SplitMix64; also a good 64-bit mixing function.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** pseudo random generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`, with `stream` selecting an independent sub-stream
    /// (e.g. the tree index).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut sm = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        // Lemire's multiply-shift with rejection.
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as usize;
            }
        }
    }

    /// `k` distinct indices out of `0..n`, sorted ascending (one selection pass, Knuth's
    /// algorithm S).
    pub(crate) fn sample_sorted(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        let mut out = Vec::with_capacity(k);
        // Selection sampling (Knuth's algorithm S): one pass, output already sorted.
        let mut needed = k;
        for i in 0..n {
            if needed == 0 {
                break;
            }
            let left = n - i;
            if self.below(left) < needed {
                out.push(i);
                needed -= 1;
            }
        }
        out
    }

    /// Shuffle in place (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = Rng::new(7, 0);
        let mut b = Rng::new(7, 0);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(7, 1);
        assert_ne!(Rng::new(7, 0).next_u64(), c.next_u64());
        for _ in 0..1000 {
            let x = a.below(13);
            assert!(x < 13);
        }
        let s = a.sample_sorted(100, 10);
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a.sample_sorted(5, 10), vec![0, 1, 2, 3, 4]);
    }
}
