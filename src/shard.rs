//! `canaryd run --shard i/n`: split the checks of one configuration across n replicas.
//!
//! Every replica loads and validates the whole configuration (so a bad file is refused by all of
//! them alike) and then keeps only the checks its shard owns. Ownership is rendezvous hashing
//! (highest random weight) over xxh3-64 of the check name seeded with the shard number: it
//! depends on nothing but the name and n, so every replica, every restart and every release
//! agrees on it, and going from n to n+1 shards moves only the checks the new shard wins
//! (about 1/(n+1) of them) instead of reshuffling nearly all of them as `hash mod n` would.

use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The most shards one configuration may be split into.
pub const MAX_SHARDS: u32 = 1024;

/// One shard of n (1-based: `1/3`, `2/3`, `3/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The single shard that owns every check (no `--shard`).
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Shard `index` of `count`, if `1 <= index <= count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        let valid = (1..=MAX_SHARDS).contains(&count) && (1..=count).contains(&index);
        valid.then_some(Shard { index, count })
    }

    /// This shard's number, 1-based.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is the only shard.
    pub fn is_all(self) -> bool {
        self.count == 1
    }

    /// The shard (of `count`) that owns the check named `name`.
    pub fn owner(name: &str, count: u32) -> Shard {
        let count = count.clamp(1, MAX_SHARDS);
        let index = (1..=count)
            .max_by_key(|&i| (xxh3_64_with_seed(name.as_bytes(), u64::from(i)), i))
            .unwrap_or(1);
        Shard { index, count }
    }

    /// Whether this shard runs the check named `name`.
    pub fn owns(self, name: &str) -> bool {
        self.is_all() || Shard::owner(name, self.count) == self
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A `--shard` value that is not `i/n` with `1 <= i <= n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard {0:?}: write i/n with 1 <= i <= n <= {MAX_SHARDS}, e.g. 2/3")]
pub struct ShardError(String);

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError(s.to_string());
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let number = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        Shard::new(number(i)?, number(n)?).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_i_of_n() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(" 1 / 1 ".parse(), Ok(Shard::ALL));
        for bad in [
            "", "3", "0/3", "4/3", "1/0", "a/3", "1/3/4", "-1/3", "1/1025",
        ] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("write i/n"), "{bad:?}: {e}");
        }
    }
}
