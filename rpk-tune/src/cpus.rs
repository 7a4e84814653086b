//! CPU sets and the two textual forms the kernel uses for them.
//!
//! `/proc/irq/N/smp_affinity_list` uses the list form (`0-3,8`), while
//! `rps_cpus`, `xps_cpus` and `affinity_hint` use comma separated 32-bit hex
//! words (`ff,00000001`). Both are parsed into the same [`CpuSet`] so that
//! values are compared as sets instead of as strings.

use std::collections::BTreeSet;
use std::fmt;

/// A set of CPU numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<usize>);

impl CpuSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding exactly `cpu`.
    pub fn single(cpu: usize) -> Self {
        Self(BTreeSet::from([cpu]))
    }

    /// Adds one CPU.
    pub fn insert(&mut self, cpu: usize) {
        self.0.insert(cpu);
    }

    /// Whether the set holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    /// Parses the list form, for example `0-3,8`. An empty string is the empty set.
    pub fn parse_list(text: &str) -> Option<Self> {
        let mut set = Self::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let lo: usize = lo.trim().parse().ok()?;
                    let hi: usize = hi.trim().parse().ok()?;
                    if hi < lo {
                        return None;
                    }
                    (lo..=hi).for_each(|cpu| set.insert(cpu));
                }
                None => set.insert(part.trim().parse().ok()?),
            }
        }
        Some(set)
    }

    /// Parses the hex mask form, for example `ff,00000001` (most significant word first).
    pub fn parse_mask(text: &str) -> Option<Self> {
        let mut set = Self::new();
        let words: Vec<&str> = text.trim().split(',').collect();
        for (index_from_right, word) in words.iter().rev().enumerate() {
            let value = u32::from_str_radix(word.trim(), 16).ok()?;
            for bit in 0..32 {
                if value & (1 << bit) != 0 {
                    set.insert(index_from_right * 32 + bit);
                }
            }
        }
        Some(set)
    }

    /// Formats the list form with ranges collapsed (`0-3,8`).
    pub fn to_list(&self) -> String {
        let mut parts = Vec::new();
        let mut iter = self.iter().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            parts.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        parts.join(",")
    }

    /// Formats the hex mask form the kernel accepts: 32-bit words separated by
    /// commas, without leading zero words, so that two CPUs give `3`.
    pub fn to_mask(&self) -> String {
        let Some(max) = self.0.iter().next_back() else {
            return "0".to_string();
        };
        let word_count = max / 32 + 1;
        let mut words = vec![0u32; word_count];
        for cpu in self.iter() {
            words[cpu / 32] |= 1 << (cpu % 32);
        }
        let mut out = Vec::with_capacity(word_count);
        for (i, word) in words.iter().rev().enumerate() {
            // Only the most significant word may be short; the others keep
            // their 8 digits because the kernel reads them positionally.
            out.push(if i == 0 {
                format!("{word:x}")
            } else {
                format!("{word:08x}")
            });
        }
        out.join(",")
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list())
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<T: IntoIterator<Item = usize>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip() {
        let set = CpuSet::parse_list("0-3,8,10-11").expect("valid list");
        assert_eq!(set.to_list(), "0-3,8,10-11");
        assert_eq!(set.to_mask(), "d0f");
    }

    #[test]
    fn mask_with_several_words() {
        let set = CpuSet::parse_mask("1,00000003").expect("valid mask");
        assert_eq!(set.to_list(), "0-1,32");
        assert_eq!(set.to_mask(), "1,00000003");
        assert_eq!(CpuSet::parse_mask("0").expect("zero").to_mask(), "0");
    }

    #[test]
    fn rejects_garbage() {
        assert!(CpuSet::parse_list("3-1").is_none());
        assert!(CpuSet::parse_list("x").is_none());
        assert!(CpuSet::parse_mask("zz").is_none());
    }
}
