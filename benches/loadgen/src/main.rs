//! `loadgen`: an OpenMessaging-Benchmark-style load generator for Kafka-API brokers, through
//! librdkafka (the `rdkafka` crate).
//!
//!     loadgen run --workload workloads/1kib-rate2000-1p-1part.toml --brokers 127.0.0.1:9092 \
//!         --label shoal-fsync --out-dir results/
//!     loadgen plot --out results/compare.png results/*.json
//!     loadgen table results/*.json
//!
//! `run` prints a progress line every second, then writes `<label>.json` (every figure, the
//! per-second timeline and the latency distributions), `<label>-timeline.png` (latency over
//! time), `<label>-percentiles.png` (latency by percentile) into `--out-dir`, and prints the
//! Markdown table row (also appended to `--markdown FILE` when given).
//!
//! Consumers use assign() of explicit partitions (a group.id is set, but there is no
//! subscribe and no offset commit), and producers run with enable.idempotence=false, so no
//! group coordinator or producer-id API is needed on the broker.

mod plot;
mod run;
mod stats;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use run::RunResult;
use workload::Workload;

#[derive(Parser)]
#[command(about = "OpenMessaging-style Kafka load generator (librdkafka)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one workload against a broker.
    Run(Box<RunArgs>),
    /// One percentile-distribution PNG over several result files (publish and end-to-end).
    Plot {
        #[arg(long)]
        out: PathBuf,
        results: Vec<PathBuf>,
    },
    /// Print the Markdown table (header and one row per result file).
    Table { results: Vec<PathBuf> },
    /// Print the fio job a workload compares against, for scripts: "block-size writers rate",
    /// where writers is the number of producers and rate their total records/s (0 = max).
    FioPlan { workload: PathBuf },
}

#[derive(Parser)]
struct RunArgs {
    #[arg(long)]
    workload: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Name of this run in file names and tables.
    #[arg(long)]
    label: Option<String>,
    #[arg(long, default_value = "loadgen-results")]
    out_dir: PathBuf,
    /// Append the Markdown row to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Extra topic config, key=value (repeatable; overrides the workload's).
    #[arg(long = "topic-config", value_parser = parse_kv)]
    topic_config: Vec<(String, String)>,
    /// Extra librdkafka producer config, key=value (repeatable; overrides the workload's,
    /// e.g. `linger.ms=0` or `queue.buffering.max.messages=10000`).
    #[arg(long = "producer-config", value_parser = parse_kv)]
    producer_config: Vec<(String, String)>,
    /// Overrides: records/s over all producers (0 = max), producers per topic, partitions
    /// per topic, warm-up and measured seconds.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    producers: Option<u32>,
    #[arg(long)]
    partitions: Option<u32>,
    /// Replication factor of the topics created (overrides the workload's, default 1).
    #[arg(long)]
    replication_factor: Option<u32>,
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long)]
    duration: Option<u64>,
    /// Create this file when the measured window begins (after the warm-up), so a script can
    /// snapshot broker-side counters at that moment (compare.sh scrapes Shoal's /metrics).
    #[arg(long)]
    window_marker: Option<PathBuf>,
    /// Do not delete the topics afterwards.
    #[arg(long)]
    keep_topics: bool,
    /// No per-second progress lines.
    #[arg(long)]
    quiet: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    Ok((k.to_string(), v.to_string()))
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.cmd {
        Cmd::Run(args) => cmd_run(*args),
        Cmd::Plot { out, results } => load_all(&results).and_then(|r| plot_compare(&r, &out)),
        Cmd::Table { results } => load_all(&results).map(|r| {
            println!("{}", table_header());
            for x in &r {
                println!("{}", table_row(x));
            }
        }),
        Cmd::FioPlan { workload } => Workload::load(&workload).map(|w| {
            let writers = w.topics * w.producers_per_topic;
            println!(
                "{} {writers} {}",
                w.fio_block_size(),
                w.producer_rate as u64
            )
        }),
    };
    if let Err(e) = outcome {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

fn cmd_run(args: RunArgs) -> Result<(), String> {
    let mut w = Workload::load(&args.workload)?;
    for (k, v) in args.topic_config {
        w.topic_config.insert(k, v);
    }
    for (k, v) in args.producer_config {
        w.producer_config.insert(k, v);
    }
    if let Some(r) = args.rate {
        w.producer_rate = r;
    }
    if let Some(p) = args.producers {
        w.producers_per_topic = p;
    }
    if let Some(p) = args.partitions {
        w.partitions_per_topic = p;
        w.consumers_per_topic = w.consumers_per_topic.min(p);
    }
    if let Some(r) = args.replication_factor {
        w.replication_factor = r;
    }
    if let Some(s) = args.warmup {
        w.warmup_seconds = s;
    }
    if let Some(s) = args.duration {
        w.test_duration_seconds = s;
    }
    w.check()?;
    let label = args.label.unwrap_or_else(|| w.name.clone());
    let opts = run::Options {
        brokers: args.brokers,
        label: label.clone(),
        keep_topics: args.keep_topics,
        quiet: args.quiet,
        window_marker: args.window_marker,
    };
    let result = run::run(&w, &opts)?;
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    let json_path = args.out_dir.join(format!("{label}.json"));
    std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    plot_run(&result, &args.out_dir)?;
    print_summary(&result);
    let row = table_row(&result);
    println!("\n{}\n{row}", table_header());
    if let Some(md) = args.markdown {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&md)
            .map_err(|e| format!("{}: {e}", md.display()))?;
        writeln!(f, "{row}").map_err(|e| e.to_string())?;
    }
    println!("wrote {}", json_path.display());
    Ok(())
}

fn load_all(paths: &[PathBuf]) -> Result<Vec<RunResult>, String> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

fn print_summary(r: &RunResult) {
    let p = &r.publish_latency;
    let e = &r.end_to_end_latency;
    println!(
        "\n{}: published {} records in {:.0} s: {:.0} msg/s, {:.2} MiB/s ({} errors); consumed {:.0} msg/s, {:.2} MiB/s",
        r.label, r.published_records, r.measured_seconds, r.publish_rate_msgs, r.publish_rate_mib,
        r.publish_errors, r.consume_rate_msgs, r.consume_rate_mib
    );
    println!(
        "publish latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} p99.99 {:.3} max {:.3}",
        p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.p9999_ms, p.max_ms
    );
    println!(
        "end-to-end latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} p99.99 {:.3} max {:.3}",
        e.p50_ms, e.p90_ms, e.p99_ms, e.p999_ms, e.p9999_ms, e.max_ms
    );
    if r.workload.producer_rate > 0.0 {
        println!(
            "send delay vs schedule ms: p99 {:.3} max {:.3}",
            r.send_delay.p99_ms, r.send_delay.max_ms
        );
    }
    if let Some(d) = &r.backlog_drain {
        println!(
            "backlog drain: {} records, {:.1} MiB in {:.2} s = {:.1} MiB/s",
            d.records, d.mib, d.seconds, d.mib_per_s
        );
    }
}

fn table_header() -> String {
    "| run | topic config | producers | partitions | target msg/s | publish msg/s | publish MiB/s | publish latency p50 / p90 / p99 / p99.9 / p99.99 / max ms | end-to-end p50 / p99 / p99.9 / p99.99 / max ms | consume msg/s | errors |\n\
     |---|---|---|---|---|---|---|---|---|---|---|"
        .to_string()
}

fn table_row(r: &RunResult) -> String {
    let w = &r.workload;
    let p = &r.publish_latency;
    let e = &r.end_to_end_latency;
    let cfg: Vec<String> = w
        .topic_config
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} / {:.2} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} | {:.0} | {} |",
        r.label,
        if cfg.is_empty() { "-".to_string() } else { cfg.join(" ") },
        w.producers_per_topic * w.topics,
        w.partitions_per_topic * w.topics,
        w.rate_label(),
        r.publish_rate_msgs,
        r.publish_rate_mib,
        p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.p9999_ms, p.max_ms,
        e.p50_ms, e.p99_ms, e.p999_ms, e.p9999_ms, e.max_ms,
        r.consume_rate_msgs,
        r.publish_errors + r.consume_errors,
    )
}

fn plot_run(r: &RunResult, dir: &Path) -> Result<(), String> {
    use plot::{Chart, Scale, Series};
    let pick = |f: fn(&run::Second) -> f64| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .filter(|s| f(s) > 0.0)
            .map(|s| (s.t as f64, f(s)))
            .collect()
    };
    let title = format!("{}: latency per second", r.label);
    let chart = Chart {
        title: &title,
        x_label: "seconds since start (warm-up included)",
        y_label: "latency (ms)",
        x_scale: Scale::Linear,
        y_scale: Scale::Log10,
        x_ticks: vec![],
        series: vec![
            Series {
                name: "publish p50".into(),
                points: pick(|s| s.publish_p50_ms),
            },
            Series {
                name: "publish p99".into(),
                points: pick(|s| s.publish_p99_ms),
            },
            Series {
                name: "publish max".into(),
                points: pick(|s| s.publish_max_ms),
            },
            Series {
                name: "end-to-end p50".into(),
                points: pick(|s| s.e2e_p50_ms),
            },
            Series {
                name: "end-to-end p99".into(),
                points: pick(|s| s.e2e_p99_ms),
            },
            Series {
                name: "end-to-end max".into(),
                points: pick(|s| s.e2e_max_ms),
            },
        ],
    };
    plot::render(&chart, &dir.join(format!("{}-timeline.png", r.label)))?;
    plot_compare(
        std::slice::from_ref(r),
        &dir.join(format!("{}-percentiles.png", r.label)),
    )
}

fn plot_compare(results: &[RunResult], out: &Path) -> Result<(), String> {
    use plot::{Chart, Scale, Series};
    let mut series = Vec::new();
    let mut max_x: f64 = 2.0;
    for r in results {
        for (kind, dist) in [
            ("publish", &r.publish_distribution),
            ("e2e", &r.end_to_end_distribution),
        ] {
            let points: Vec<(f64, f64)> = dist
                .iter()
                .map(|(q, ms)| (plot::quantile_x(*q), *ms))
                .collect();
            max_x = points.iter().map(|p| p.0).fold(max_x, f64::max);
            series.push(Series {
                name: format!("{} {kind}", r.label),
                points,
            });
        }
    }
    let title = if results.len() == 1 {
        format!("{}: latency by percentile", results[0].label)
    } else {
        "latency by percentile".to_string()
    };
    let chart = Chart {
        title: &title,
        x_label: "percentile",
        y_label: "latency (ms)",
        x_scale: Scale::Linear,
        y_scale: Scale::Log10,
        x_ticks: plot::percentile_ticks(max_x.ceil() as usize),
        series,
    };
    plot::render(&chart, out)
}
