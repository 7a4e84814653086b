//! Appends forever with the real glommio writer and prints `ack <tag> <base> <guarantee>` on
//! stdout after each acknowledged append. The crash test kills it with SIGKILL at a random
//! moment; every line it printed is a promise the recovered log must keep.
//!
//! Usage: `crash-writer DATA_DIR CYCLE PRODUCERS fsync|relaxed`

use std::io::Write;
use std::rc::Rc;

use futures::future::join_all;
use shoal_storage::{build_batch, Guarantee, Log, Wait};
use shoal_storage_crash_test::{config, context, executor_options, log_dir, needle};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: crash-writer DATA_DIR CYCLE PRODUCERS fsync|relaxed");
        std::process::exit(2);
    }
    let root = std::path::PathBuf::from(&args[1]);
    let cycle: u64 = args[2].parse().unwrap_or(0);
    let producers: u64 = args[3].parse().unwrap_or(1);
    let relaxed = args[4] == "relaxed";
    let executor = match executor_options("crash-writer").make() {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("crash-writer: cannot start executor: {error}");
            std::process::exit(1);
        }
    };
    executor.run(async move {
        let log = match Log::open(context(), log_dir(&root), config(relaxed)).await {
            Ok(log) => log,
            Err(error) => {
                eprintln!("crash-writer: recovery failed: {error}");
                std::process::exit(1);
            }
        };
        let flusher = log.clone();
        let _flusher = glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
        let stdout = Rc::new(std::io::stdout());
        let tasks = (0..producers).map(|producer| {
            let (log, stdout) = (log.clone(), stdout.clone());
            async move {
                for i in 0u64.. {
                    let tag = cycle * 1_000_000_000 + producer * 10_000_000 + i;
                    let value = format!("{}{}", needle(tag), "v".repeat((i as usize * 37) % 3000));
                    let batch = build_batch(&[value.as_bytes(), b"second record"], 0);
                    match log.append(batch, Wait::Durable).await {
                        Ok(appended) => {
                            let guarantee = if appended.guarantee == Guarantee::Synced {
                                "synced"
                            } else {
                                "written"
                            };
                            let mut out = stdout.lock();
                            let _ =
                                writeln!(out, "ack {tag} {} {guarantee}", appended.base_offset.0);
                            let _ = out.flush();
                        }
                        Err(error) => {
                            eprintln!("crash-writer: append failed: {error}");
                            std::process::exit(1);
                        }
                    }
                }
            }
        });
        join_all(tasks.map(glommio::spawn_local)).await;
    });
}
