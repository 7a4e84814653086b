//! Parsing of `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// One mount, as described by one line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device (`0:N` for filesystems without one).
    pub major_minor: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type, for example `ext4` or `tmpfs`.
    pub fs_type: String,
    /// Mount source, for example `/dev/vda1` or `/dev/mapper/vg-data`.
    pub source: String,
}

/// Undoes the octal escapes (`\040` for a space) the kernel uses in mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses all lines; malformed lines are skipped because one odd mount must
/// not prevent finding the one that holds the data directory.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                major_minor: fields.get(2)?.to_string(),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fs_type: fields.get(separator + 1)?.to_string(),
                source: unescape(fields.get(separator + 2)?),
            })
        })
        .collect()
}

/// The mount that holds `path`: the longest mount point that is a prefix of
/// it, and among equal mount points the last one, because a later mount on
/// the same directory hides the earlier ones.
pub fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(index, m)| (m.mount_point.components().count(), *index))
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:1 / /var/lib/shoal rw shared:5 - xfs /dev/nvme0n1p1 rw
41 27 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_longest_prefix() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 4);
        let m = mount_of(&mounts, Path::new("/var/lib/shoal/data")).expect("mount");
        assert_eq!(m.major_minor, "259:1");
        assert_eq!(m.source, "/dev/nvme0n1p1");
        let m = mount_of(&mounts, Path::new("/var/lib/shoalx")).expect("mount");
        assert_eq!(m.mount_point, Path::new("/"));
        assert_eq!(mounts[3].mount_point, Path::new("/mnt/with space"));
    }
}
