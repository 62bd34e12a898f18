//! A deterministic pseudo-random byte stream and its verifier, for "a large
//! TCP transfer arrives byte-identical". The sender generates it from a seed;
//! the receiver regenerates it and compares every byte as it arrives, and
//! both report a SHA-256 so the test can compare the ends independently.

use ring::digest::{Context, SHA256};

/// SplitMix64: tiny, fast and fully specified, so both ends agree forever.
#[derive(Debug, Clone)]
pub struct StreamGen {
    state: u64,
    buf: [u8; 8],
    used: usize,
}

impl StreamGen {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            buf: [0; 8],
            used: 8,
        }
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == 8 {
                self.buf = self.next_word().to_le_bytes();
                self.used = 0;
            }
            *byte = self.buf[self.used];
            self.used += 1;
        }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Checks received bytes against the stream, in order.
pub struct Verifier {
    expected: StreamGen,
    scratch: Vec<u8>,
    hash: Context,
    received: u64,
    first_mismatch: Option<u64>,
}

/// What a verifier saw, printed by the helper binary as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub received: u64,
    pub first_mismatch: Option<u64>,
    pub sha256: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("received", &self.received)
            .field("first_mismatch", &self.first_mismatch)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of the stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            expected: StreamGen::new(seed),
            scratch: Vec::new(),
            hash: Context::new(&SHA256),
            received: 0,
            first_mismatch: None,
        }
    }

    /// Takes the next received bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hash.update(data);
        self.scratch.resize(data.len(), 0);
        self.expected.fill(&mut self.scratch);
        if self.first_mismatch.is_none() {
            if let Some(i) = data.iter().zip(&self.scratch).position(|(a, b)| a != b) {
                self.first_mismatch = Some(self.received + i as u64);
            }
        }
        self.received += data.len() as u64;
    }

    /// The totals.
    pub fn finish(self) -> Verdict {
        Verdict {
            received: self.received,
            first_mismatch: self.first_mismatch,
            sha256: hex::encode(self.hash.finish().as_ref()),
        }
    }
}

/// SHA-256 of the first `len` bytes of the stream for `seed`.
pub fn expected_sha256(seed: u64, len: u64) -> String {
    let mut generator = StreamGen::new(seed);
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        generator.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    hex::encode(hash.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_stream() {
        let mut whole = vec![0u8; 1000];
        StreamGen::new(7).fill(&mut whole);
        let mut parts = vec![0u8; 1000];
        let mut g = StreamGen::new(7);
        for chunk in parts.chunks_mut(13) {
            g.fill(chunk);
        }
        assert_eq!(whole, parts);
        let mut other = vec![0u8; 1000];
        StreamGen::new(8).fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn verifier_accepts_the_stream_and_matches_the_hash() {
        let mut data = vec![0u8; 100_000];
        StreamGen::new(42).fill(&mut data);
        let mut v = Verifier::new(42);
        for chunk in data.chunks(1500) {
            v.update(chunk);
        }
        let verdict = v.finish();
        assert_eq!(verdict.received, 100_000);
        assert_eq!(verdict.first_mismatch, None);
        assert_eq!(verdict.sha256, expected_sha256(42, 100_000));
    }

    #[test]
    fn verifier_finds_a_flipped_byte() {
        let mut data = vec![0u8; 10_000];
        StreamGen::new(1).fill(&mut data);
        data[7777] ^= 0x01;
        let mut v = Verifier::new(1);
        for chunk in data.chunks(1000) {
            v.update(chunk);
        }
        let verdict = v.finish();
        assert_eq!(verdict.first_mismatch, Some(7777));
        assert_ne!(verdict.sha256, expected_sha256(1, 10_000));
    }

    #[test]
    fn verifier_finds_a_missing_chunk() {
        let mut data = vec![0u8; 10_000];
        StreamGen::new(1).fill(&mut data);
        data.drain(4000..5000);
        let mut v = Verifier::new(1);
        v.update(&data);
        let verdict = v.finish();
        assert_eq!(verdict.received, 9000);
        assert!(verdict.first_mismatch.is_some_and(|m| m >= 4000));
    }
}
