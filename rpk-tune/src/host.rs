//! Access to the host being tuned, rooted at `--root`.
//!
//! Every tuner reads and writes through [`Host`] so that the same code runs
//! against the real `/sys`, `/proc` and `/etc` or against a fake tree prepared
//! in a temporary directory. Ioctls and `systemctl` go through traits for the
//! same reason: tests swap in fakes that record what would have been sent.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::commands::{CommandRunner, NoCommands, SystemCommands};
use crate::error::{Error, Result};
use crate::ioctl::{IoctlExecutor, UnavailableIoctl};
use crate::sys::SysIoctl;

/// The machine (or fake tree) being tuned.
pub struct Host {
    root: PathBuf,
    ioctl: Box<dyn IoctlExecutor>,
    commands: Box<dyn CommandRunner>,
}

impl Host {
    /// A host rooted at `root` with explicit ioctl and command back ends.
    pub fn new(
        root: impl Into<PathBuf>,
        ioctl: Box<dyn IoctlExecutor>,
        commands: Box<dyn CommandRunner>,
    ) -> Self {
        Self {
            root: root.into(),
            ioctl,
            commands,
        }
    }

    /// The real machine: paths under `/`, real ioctls, real `systemctl`.
    pub fn live() -> Self {
        Self::new("/", Box::new(SysIoctl), Box::new(SystemCommands))
    }

    /// A fake tree at `root` as used by `--root`: files are read and written
    /// under it, but ioctls and systemctl are refused, because they would
    /// reach the real devices and services rather than the tree.
    pub fn fake_tree(root: impl Into<PathBuf>) -> Self {
        Self::new(root, Box::new(UnavailableIoctl), Box::new(NoCommands))
    }

    /// The directory every absolute path is resolved under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this host is the real machine rather than a tree under `--root`.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Resolves a host path such as `/sys/block/vda/queue/nomerges` under the root.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for component in host_path.as_ref().components() {
            if let Component::Normal(part) = component {
                out.push(part);
            } else if component == Component::ParentDir {
                out.push("..");
            }
        }
        out
    }

    /// Converts a resolved path back into a host path by stripping the root.
    pub fn host_path(&self, resolved: &Path) -> PathBuf {
        match resolved.strip_prefix(&self.root) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => resolved.to_path_buf(),
        }
    }

    /// Whether the host path exists (following symlinks).
    pub fn exists(&self, host_path: impl AsRef<Path>) -> bool {
        self.path(host_path).exists()
    }

    /// Reads a file and strips the trailing newline the kernel appends.
    pub fn read(&self, host_path: impl AsRef<Path>) -> Result<String> {
        let path = self.path(host_path);
        fs::read_to_string(&path)
            .map(|text| text.trim_end_matches('\n').to_string())
            .map_err(|source| Error::Read { path, source })
    }

    /// Like [`Host::read`] but a missing file is `None` instead of an error.
    pub fn read_opt(&self, host_path: impl AsRef<Path>) -> Result<Option<String>> {
        let path = self.path(host_path);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Writes a value into an existing file, the way `echo value > file` does.
    ///
    /// The file is never created: sysfs and procfs attributes always exist,
    /// so a missing file means the attribute is not supported here.
    pub fn write(&self, host_path: impl AsRef<Path>, value: &str) -> Result<()> {
        let path = self.path(host_path);
        let result = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{value}\n").as_bytes()));
        result.map_err(|source| Error::Write { path, source })
    }

    /// Creates or replaces a regular file (configuration files, not sysfs).
    pub fn replace_file(&self, host_path: impl AsRef<Path>, contents: &str) -> Result<()> {
        let path = self.path(host_path);
        let result = match path.parent() {
            Some(parent) => fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| fs::write(&path, contents));
        result.map_err(|source| Error::Write { path, source })
    }

    /// Removes a file; a file that is already gone is fine.
    pub fn remove_file(&self, host_path: impl AsRef<Path>) -> Result<()> {
        let path = self.path(host_path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Write { path, source }),
        }
    }

    /// Whether the file has any write permission bit.
    ///
    /// Sysfs refuses writes to attributes without a write bit even for root,
    /// so this is the test for "read-only attribute" rather than `access(2)`,
    /// which would always say yes to root.
    pub fn is_writable(&self, host_path: impl AsRef<Path>) -> bool {
        fs::metadata(self.path(host_path))
            .map(|meta| meta.permissions().mode() & 0o222 != 0)
            .unwrap_or(false)
    }

    /// The sorted entry names of a directory; a missing directory is `None`.
    pub fn list(&self, host_path: impl AsRef<Path>) -> Result<Option<Vec<String>>> {
        let path = self.path(host_path);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Read { path, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort_by_key(|name| natural_key(name));
        Ok(Some(names))
    }

    /// Resolves symlinks of a host path and returns the result as a host path.
    pub fn canonical(&self, host_path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = self.path(host_path);
        let resolved = fs::canonicalize(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let root = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        Ok(match resolved.strip_prefix(&root) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => resolved,
        })
    }

    /// The ioctl back end.
    pub fn ioctl(&self) -> &dyn IoctlExecutor {
        self.ioctl.as_ref()
    }

    /// The command back end.
    pub fn commands(&self) -> &dyn CommandRunner {
        self.commands.as_ref()
    }
}

/// Sort key that orders `rx-10` after `rx-9` and `nvme0q10` after `nvme0q9`.
pub fn natural_key(name: &str) -> (String, u64, String) {
    let digits_start = name
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i);
    match digits_start {
        Some(i) => (
            name[..i].to_string(),
            name[i..].parse().unwrap_or(u64::MAX),
            String::new(),
        ),
        None => (name.to_string(), 0, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_resolved_under_the_root() {
        let host = Host::fake_tree("/tmp/fake");
        assert_eq!(
            host.path("/sys/block/vda"),
            PathBuf::from("/tmp/fake/sys/block/vda")
        );
        assert_eq!(
            host.host_path(Path::new("/tmp/fake/proc/x")),
            PathBuf::from("/proc/x")
        );
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["rx-10", "rx-2", "rx-1"];
        names.sort_by_key(|name| natural_key(name));
        assert_eq!(names, ["rx-1", "rx-2", "rx-10"]);
    }
}
