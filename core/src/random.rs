//! Randomness comes into the core through this trait, so that a simulation can replay a
//! run: runtimes pass the operating system's generator, tests a seeded one.

/// A source of random bytes.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);

    fn bytes<const N: usize>(&mut self) -> [u8; N]
    where
        Self: Sized,
    {
        let mut b = [0u8; N];
        self.fill(&mut b);
        b
    }

    /// A uniform value in `0..n` (`n > 0`), for jitter.
    fn below(&mut self, n: u64) -> u64
    where
        Self: Sized,
    {
        u64::from_le_bytes(self.bytes::<8>()) % n.max(1)
    }
}

/// A deterministic generator (splitmix64) for tests and simulations. Not for keys.
#[derive(Clone, Debug)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded(seed)
    }
}

impl Random for Seeded {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let z = z ^ (z >> 31);
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}
