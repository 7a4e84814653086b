//! `GlommioDisk` against a real file system, inside a real pinned glommio executor.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use shoal_io::{Disk, DmaBuf, DmaFile, OpenMode};
use shoal_model::constants::DMA_ALIGNMENT_BYTES;
use shoal_runtime::executor::{BlockingThread, ExecutorOptions};
use shoal_runtime::{to_io_error, GlommioDisk, GlommioFile};

const BLOCK: usize = DMA_ALIGNMENT_BYTES as usize;

/// A scratch directory on a file system with O_DIRECT support (not tmpfs).
fn scratch_dir() -> tempfile::TempDir {
    let base = [PathBuf::from("/var/tmp"), std::env::temp_dir()]
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    tempfile::Builder::new()
        .prefix("shoal-runtime-")
        .tempdir_in(base)
        .expect("create scratch dir")
}

fn options(name: &str) -> ExecutorOptions {
    ExecutorOptions {
        name: name.to_owned(),
        cpu: 0,
        io_memory_bytes: 1 << 20,
        ring_depth: 64,
        preempt_timer: Duration::from_millis(100),
        spin_before_park: None,
        blocking_thread: BlockingThread::Cpu(0),
    }
}

/// Runs `test(dir)` on a fresh pinned executor and propagates its result (and panics).
fn run<F, Fut>(name: &str, test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    let dir = scratch_dir();
    let path = dir.path().to_path_buf();
    let handle = options(name)
        .spawn(move || test(path))
        .expect("spawn executor");
    handle
        .join()
        .map_err(to_io_error)
        .expect("executor thread")
        .expect("test body");
    drop(dir);
}

/// A buffer of `blocks` blocks where byte `i` is `(seed + i) % 251`.
fn patterned(file: &GlommioFile, blocks: usize, seed: usize) -> shoal_runtime::GlommioBuf {
    let mut buf = file.alloc_buf(blocks * BLOCK);
    for (i, b) in buf.as_bytes_mut().iter_mut().enumerate() {
        *b = ((seed + i) % 251) as u8;
    }
    buf
}

fn pattern(seed: usize, range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(|i| ((seed + i) % 251) as u8).collect()
}

/// Also the regression test for glommio's IOPOLL misdetection: the first file this executor
/// opens is empty, which used to make every later read fail with `EOPNOTSUPP`.
#[test]
fn write_aligned_read_unaligned() {
    run("write-read", |dir| async move {
        let disk = GlommioDisk::new();
        let file = disk
            .open(&dir.join("seg"), OpenMode::CreateTruncate)
            .await?;
        let buf = Rc::new(patterned(&file, 4, 7));
        assert_eq!(file.write_at(Rc::clone(&buf), 0).await?, 4 * BLOCK);
        // The caller may keep its clone and read it after the write.
        assert_eq!(buf.as_bytes(), &pattern(7, 0..4 * BLOCK)[..]);
        assert_eq!(file.size_bytes().await?, (4 * BLOCK) as u64);

        for (pos, len) in [
            (0, 1),
            (1, 10),
            (4095, 2),
            (100, 3 * BLOCK),
            (5000, 7000),
            (0, 4 * BLOCK),
        ] {
            let got = file.read_at(pos as u64, len).await?;
            assert_eq!(got, pattern(7, pos..pos + len), "read {pos}+{len}");
        }
        // Short only at end of file.
        assert_eq!(
            file.read_at((4 * BLOCK - 3) as u64, 100).await?,
            pattern(7, 4 * BLOCK - 3..4 * BLOCK)
        );
        assert!(file.read_at((4 * BLOCK) as u64, 10).await?.is_empty());
        assert!(file.read_at((10 * BLOCK + 5) as u64, 10).await?.is_empty());
        assert!(file.read_at(3, 0).await?.is_empty());

        // Once the write completed and the other clone is gone, the buffer is refillable.
        let mut buf = Rc::try_unwrap(buf).expect("no other clones");
        buf.as_bytes_mut()[0] = 0xAB;
        buf.trim_to_size(BLOCK);
        assert_eq!(
            file.write_at(Rc::new(buf), (4 * BLOCK) as u64).await?,
            BLOCK
        );
        assert_eq!(
            file.read_at((4 * BLOCK) as u64, 2).await?,
            vec![0xAB, pattern(7, 1..2)[0]]
        );
        file.fdatasync().await?;
        file.close().await?;

        // Reopen and read what was written.
        let file = disk.open(&dir.join("seg"), OpenMode::Existing).await?;
        assert_eq!(file.size_bytes().await?, (5 * BLOCK) as u64);
        assert_eq!(file.read_at(10, 20).await?, pattern(7, 10..30));
        file.close().await
    });
}

#[test]
fn read_is_short_when_file_ends_inside_a_block() {
    run("eof", |dir| async move {
        let disk = GlommioDisk::new();
        let file = disk
            .open(&dir.join("seg"), OpenMode::CreateTruncate)
            .await?;
        file.write_at(Rc::new(patterned(&file, 2, 3)), 0).await?;
        file.truncate((BLOCK + 4) as u64).await?;
        assert_eq!(file.size_bytes().await?, (BLOCK + 4) as u64);
        // Starts in the last (partial) block: only the 2 bytes before EOF.
        assert_eq!(
            file.read_at((BLOCK + 2) as u64, 100).await?,
            pattern(3, BLOCK + 2..BLOCK + 4)
        );
        // Spans a full block and the partial one.
        assert_eq!(
            file.read_at(10, 2 * BLOCK).await?,
            pattern(3, 10..BLOCK + 4)
        );
        file.close().await
    });
}

#[test]
fn open_modes() {
    run("open-modes", |dir| async move {
        let disk = GlommioDisk::new();
        let path = dir.join("f");

        let err = disk
            .open(&path, OpenMode::Existing)
            .await
            .expect_err("missing file");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        let file = disk.open(&path, OpenMode::CreateOrOpen).await?;
        file.write_at(Rc::new(patterned(&file, 1, 0)), 0).await?;
        file.close().await?;

        // CreateOrOpen keeps the contents.
        let file = disk.open(&path, OpenMode::CreateOrOpen).await?;
        assert_eq!(file.size_bytes().await?, BLOCK as u64);
        file.close().await?;

        // CreateTruncate empties it.
        let file = disk.open(&path, OpenMode::CreateTruncate).await?;
        assert_eq!(file.size_bytes().await?, 0);
        file.close().await?;

        // Errors keep their errno through glommio's enhanced errors.
        let err = disk
            .open(&dir.join("no-such-dir").join("f"), OpenMode::CreateOrOpen)
            .await
            .expect_err("missing parent");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = disk
            .open(&dir, OpenMode::Existing)
            .await
            .expect_err("a directory");
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
        Ok(())
    });
}

#[test]
fn truncate_and_allocate() {
    run("alloc", |dir| async move {
        let disk = GlommioDisk::new();
        let file = disk
            .open(&dir.join("seg"), OpenMode::CreateTruncate)
            .await?;

        // keep_size: blocks reserved, visible size unchanged.
        file.allocate((64 * BLOCK) as u64, true).await?;
        assert_eq!(file.size_bytes().await?, 0);
        let allocated = std::fs::metadata(dir.join("seg"))?;
        assert!(std::os::unix::fs::MetadataExt::blocks(&allocated) * 512 >= (64 * BLOCK) as u64);

        // Writes into the reserved range grow the size as usual.
        file.write_at(Rc::new(patterned(&file, 2, 1)), 0).await?;
        assert_eq!(file.size_bytes().await?, (2 * BLOCK) as u64);

        // Without keep_size the file grows and the new range reads as zeros.
        file.allocate((8 * BLOCK) as u64, false).await?;
        assert_eq!(file.size_bytes().await?, (8 * BLOCK) as u64);
        assert_eq!(file.read_at(0, 2 * BLOCK).await?, pattern(1, 0..2 * BLOCK));
        assert_eq!(
            file.read_at((3 * BLOCK + 1) as u64, 100).await?,
            vec![0; 100]
        );
        // Allocating less than the size never shrinks.
        file.allocate(BLOCK as u64, false).await?;
        assert_eq!(file.size_bytes().await?, (8 * BLOCK) as u64);
        file.allocate(0, false).await?;

        // Truncate shrinks (and drops the data) and grows (zeros).
        file.truncate(BLOCK as u64).await?;
        assert_eq!(file.size_bytes().await?, BLOCK as u64);
        file.truncate((3 * BLOCK) as u64).await?;
        assert_eq!(file.size_bytes().await?, (3 * BLOCK) as u64);
        assert_eq!(file.read_at(0, BLOCK).await?, pattern(1, 0..BLOCK));
        assert_eq!(file.read_at(BLOCK as u64, BLOCK).await?, vec![0; BLOCK]);

        file.fdatasync().await?;
        file.close().await
    });
}

#[test]
fn directory_operations() {
    run("dirs", |dir| async move {
        let disk = GlommioDisk::new();
        let topic = dir.join("topic-0").join("nested");
        disk.create_dir_all(&topic).await?;
        disk.create_dir_all(&topic).await?; // idempotent
        assert!(topic.is_dir());
        disk.sync_dir(&dir).await?;
        disk.sync_dir(&topic).await?;

        for name in ["b.log", "a.log", "c.index"] {
            disk.open(&topic.join(name), OpenMode::CreateTruncate)
                .await?
                .close()
                .await?;
        }
        assert_eq!(disk.list(&topic).await?, ["a.log", "b.log", "c.index"]);

        disk.rename(&topic.join("c.index"), &topic.join("a.index"))
            .await?;
        disk.remove(&topic.join("b.log")).await?;
        disk.sync_dir(&topic).await?;
        assert_eq!(disk.list(&topic).await?, ["a.index", "a.log"]);

        let err = disk
            .remove(&topic.join("b.log"))
            .await
            .expect_err("already removed");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = disk
            .rename(&topic.join("zz"), &topic.join("yy"))
            .await
            .expect_err("missing");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = disk
            .list(&dir.join("missing"))
            .await
            .expect_err("missing dir");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = disk
            .sync_dir(&dir.join("missing"))
            .await
            .expect_err("missing dir");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        let free = disk.free_bytes(&dir)?;
        assert!(free > 0, "free bytes {free}");
        let err = disk
            .free_bytes(&dir.join("missing"))
            .expect_err("missing dir");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        Ok(())
    });
}

#[test]
fn relative_paths_resolve_against_current_dir() {
    run("relative", |dir| async move {
        let disk = GlommioDisk::new();
        let cwd = std::env::current_dir()?;
        let Some(rel) = pathdiff(&dir, &cwd) else {
            return Ok(()); // scratch dir not reachable relatively; nothing to check
        };
        let file = disk.open(&rel.join("f"), OpenMode::CreateTruncate).await?;
        file.close().await?;
        assert!(dir.join("f").is_file());
        Ok(())
    });
}

/// `target` relative to `base`, built only from `..` and names.
fn pathdiff(target: &Path, base: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for _ in base.components().skip(1) {
        rel.push("..");
    }
    Some(rel.join(target.strip_prefix("/").ok()?))
}

#[test]
#[should_panic(expected = "positive multiple")]
fn unaligned_buffer_length_is_rejected() {
    let opts = options("unaligned");
    let ex = opts.make().expect("executor");
    ex.run(async {
        let dir = scratch_dir();
        let disk = GlommioDisk::new();
        let file = disk
            .open(&dir.path().join("f"), OpenMode::CreateTruncate)
            .await
            .expect("open");
        let _ = file.alloc_buf(100);
    });
}

#[test]
fn executor_rejects_offline_cpu() {
    let mut opts = options("bad-cpu");
    opts.cpu = 100_000;
    let err = opts.builder().expect_err("cpu 100000 is not online");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// A file renamed while open still takes durable writes: its `O_DSYNC` descriptor is opened
/// through the open one, not the old name (an empty segment is renamed for a new term before
/// its first write; reopening by name failed with ENOENT and took the partition offline).
#[test]
fn durable_writes_follow_a_file_renamed_while_open() {
    run("rename-dsync", |dir| async move {
        let disk = GlommioDisk::new();
        let (old, new) = (dir.join("a.log"), dir.join("b.log"));
        let file = disk.open(&old, OpenMode::CreateTruncate).await?;
        disk.rename(&old, &new).await?;
        let buf = Rc::new(patterned(&file, 1, 3));
        assert_eq!(file.write_at_synced(buf, 0).await?, BLOCK);
        file.close().await?;
        let back = disk.open(&new, OpenMode::Existing).await?;
        assert_eq!(back.read_at(0, BLOCK).await?, pattern(3, 0..BLOCK));
        back.close().await
    });
}
