//! Everything random in a run comes from one seed (`--seed S`, else drawn
//! from the operating system and stored in the plan).
//!
//! The generator is ChaCha8 (`rand::rngs::ChaCha8Rng`): a fixed algorithm,
//! the same on every platform, with 2^64 independent streams per seed.
//! - `{run}` is the first `u32` of stream [`RUN_STREAM`];
//! - worker `w` draws its values of `{n}` (`--key-order random`) from
//!   stream `w`, one draw per call, uniformly over `--keys`;
//! - in the lease scenario, worker `w` draws each lease's hold time and
//!   whether its holder is killed from stream [`LEASE_STREAMS`]` + w`, so
//!   the keys drawn stay the same as without it.
//!
//! So one seed, with the same `--keys` and the same rush build, gives the
//! same `{run}` and, for every worker, the same sequence of `{n}`: its call
//! `i` uses the same key in every run. What the seed does not fix: how the
//! calls of different workers interleave on the server (and so which of them
//! are allowed), how many calls a worker makes in sustained mode, and the
//! order of `--key-order sequential` (workers take the next value from one
//! shared counter, in whatever order they get there).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The generator a worker draws `{n}` from.
pub type KeyRng = ChaCha8Rng;

/// The stream `{run}` is drawn from (workers use streams `0..workers`).
pub const RUN_STREAM: u64 = u64::MAX;

/// Where the lease scenario's streams start (worker `w` uses `LEASE_STREAMS + w`).
pub const LEASE_STREAMS: u64 = 1 << 63;

/// The largest seed [`fresh`] draws: 2^53-1, so that the report's `seed`
/// reads exactly in every JSON parser (JavaScript's numbers included).
pub const MAX_FRESH: u64 = (1 << 53) - 1;

/// A fresh seed from the operating system (when `--seed` is not given), at most [`MAX_FRESH`].
pub fn fresh() -> u64 {
    rand::random::<u64>() & MAX_FRESH
}

/// Stream `stream` of the generator seeded with `seed`.
fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The `{run}` id of a run with this seed.
pub fn run_id(seed: u64) -> u32 {
    stream(seed, RUN_STREAM).random()
}

/// Worker `worker`'s generator for `{n}`.
pub fn worker_rng(seed: u64, worker: u64) -> KeyRng {
    stream(seed, worker)
}

/// Worker `worker`'s generator for hold times and kills (lease scenario).
pub fn lease_rng(seed: u64, worker: u64) -> KeyRng {
    stream(seed, LEASE_STREAMS | worker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::KeyRange;

    fn draws(seed: u64, worker: u64, keys: KeyRange, n: usize) -> Vec<u64> {
        let mut rng = worker_rng(seed, worker);
        (0..n).map(|_| keys.random(&mut rng)).collect()
    }

    #[test]
    fn one_seed_gives_every_worker_the_same_keys_again() {
        let keys = KeyRange::parse("1..=1000").unwrap();
        for w in [0, 1, 99_999] {
            assert_eq!(draws(42, w, keys, 200), draws(42, w, keys, 200));
        }
        assert_eq!(run_id(42), run_id(42));
    }

    #[test]
    fn workers_and_seeds_draw_different_keys() {
        let keys = KeyRange::parse("0..=1000000").unwrap();
        assert_ne!(draws(42, 0, keys, 20), draws(42, 1, keys, 20));
        assert_ne!(draws(42, 0, keys, 20), draws(43, 0, keys, 20));
        assert_ne!(run_id(42), run_id(43));
        // {run} does not repeat worker 0's first draw.
        assert_ne!(
            u64::from(run_id(42)),
            worker_rng(42, 0).random::<u32>() as u64
        );
    }

    #[test]
    fn fresh_seeds_are_exact_json_numbers() {
        let seeds: Vec<u64> = (0..1000).map(|_| fresh()).collect();
        assert!(seeds.iter().all(|&s| s <= MAX_FRESH));
        // ... and still random: the top bits are used.
        assert!(seeds.iter().any(|&s| s > MAX_FRESH / 2));
        assert!(seeds.windows(2).any(|w| w[0] != w[1]));
        assert_eq!(MAX_FRESH, 9_007_199_254_740_991);
    }

    #[test]
    fn draws_stay_in_the_range_and_cover_it() {
        let keys = KeyRange::parse("5..=9").unwrap();
        let d = draws(7, 3, keys, 500);
        assert!(d.iter().all(|n| (5..=9).contains(n)));
        for n in 5..=9 {
            assert!(d.contains(&n), "{n} never drawn");
        }
        let one = KeyRange::parse("3").unwrap();
        assert!(draws(7, 0, one, 10).iter().all(|&n| n == 3));
        let full = KeyRange::parse(&format!("0..={}", u64::MAX)).unwrap();
        assert_eq!(draws(7, 0, full, 10), draws(7, 0, full, 10));
    }

    /// The exact values, so a change of algorithm (a new rand or ChaCha
    /// release) shows up here: rush/README.md promises that a seed gives
    /// the same keys with the same rush build, and says what changes them.
    #[test]
    fn seed_42_draws_these_keys() {
        let keys = KeyRange::parse("1..=100").unwrap();
        assert_eq!(draws(42, 0, keys, 8), GOLDEN_W0);
        assert_eq!(draws(42, 1, keys, 8), GOLDEN_W1);
        assert_eq!(run_id(42), GOLDEN_RUN);
    }

    const GOLDEN_W0: [u64; 8] = [69, 96, 43, 63, 29, 15, 31, 81];
    const GOLDEN_W1: [u64; 8] = [72, 17, 49, 85, 7, 78, 13, 6];
    /// `{run}` = 4cde9f01.
    const GOLDEN_RUN: u32 = 0x4cde_9f01;
}
