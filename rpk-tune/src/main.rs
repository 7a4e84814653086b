//! Command line of `rpk-tune`. See README.md for the exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use rpk_tune::engine::{self, Outcome, EXIT_FAILED, EXIT_USAGE};
use rpk_tune::irq::IrqMode;
use rpk_tune::options::{self, Options};
use rpk_tune::report::{render_table, Row};
use rpk_tune::{Error, Host, Selection};

const EXIT_CODES: &str = "Exit codes:
  0  check: no severity-error check failed; apply/rollback: everything applied
     (unsupported tuners never fail a run); dry runs and scripts: rendered
  1  check: a severity-error check failed or could not be read;
     apply/rollback: a change failed, or a severity-error check still fails
  2  usage error: bad flag, unknown tuner name, refused --device";

/// Checks and tunes a host for the Shoal broker.
#[derive(Parser)]
#[command(name = "rpk-tune", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Subcommand)]
enum Command {
    /// Report every tuner's current and required value; change nothing.
    Check,
    /// Change what does not meet the requirement, saving originals for rollback.
    Apply(ChangeArgs),
    /// Restore the values saved by apply.
    Rollback(ChangeArgs),
    /// List the tuner names accepted by --only and --skip.
    List,
}

#[derive(Args)]
struct ChangeArgs {
    /// Print the shell commands instead of changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Write the shell commands to FILE instead of changing anything.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Args)]
struct Global {
    /// Resolve /sys, /proc, /etc and /dev under DIR (a fake tree); ioctls
    /// and systemctl are not used then.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// The broker's data directory.
    #[arg(long, global = true, default_value = options::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Run only these tuners (comma separated).
    #[arg(long, global = true, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these tuners (comma separated).
    #[arg(long, global = true, value_delimiter = ',')]
    skip: Vec<String>,
    /// Tune this block device instead of the data directory's (repeatable).
    #[arg(long = "device", global = true, value_name = "DEVICE")]
    devices: Vec<String>,
    /// Allow --device to name a device that does not hold the data directory.
    #[arg(long, global = true)]
    allow_other_devices: bool,
    /// Tune this NIC (repeatable); default: every interface backed by a device.
    #[arg(long = "nic", global = true, value_name = "IFACE")]
    nics: Vec<String>,
    /// How IRQs are spread over CPUs.
    #[arg(long, global = true, value_enum, default_value_t = IrqMode::Driver)]
    irq_mode: IrqMode,
    /// Size of the ballast file in bytes.
    #[arg(long, global = true, default_value_t = options::DEFAULT_BALLAST_SIZE_BYTES)]
    ballast_size_bytes: u64,
    /// NVMe completions aggregated per interrupt (1..=256).
    #[arg(long, global = true, default_value_t = Options::default().nvme_coalesce_threshold_entries)]
    nvme_coalesce_threshold_entries: u16,
    /// Longest NVMe interrupt delay in µs (multiple of 100, at most 25500).
    #[arg(long, global = true, default_value_t = Options::default().nvme_coalesce_time_us)]
    nvme_coalesce_time_us: u32,
    /// NIC rx-usecs.
    #[arg(long, global = true, default_value_t = Options::default().nic_rx_coalesce_us)]
    nic_rx_coalesce_us: u32,
    /// NIC tx-usecs.
    #[arg(long, global = true, default_value_t = Options::default().nic_tx_coalesce_us)]
    nic_tx_coalesce_us: u32,
    /// State file for rollback [default: /var/lib/shoal/rpk-tune-state.json under --root].
    #[arg(long, global = true, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl Global {
    fn options(&self) -> Options {
        Options {
            data_dir: self.data_dir.clone(),
            devices: self.devices.clone(),
            allow_other_devices: self.allow_other_devices,
            nics: self.nics.clone(),
            irq_mode: self.irq_mode,
            ballast_size_bytes: self.ballast_size_bytes,
            nvme_coalesce_threshold_entries: self.nvme_coalesce_threshold_entries,
            nvme_coalesce_time_us: self.nvme_coalesce_time_us,
            nic_rx_coalesce_us: self.nic_rx_coalesce_us,
            nic_tx_coalesce_us: self.nic_tx_coalesce_us,
        }
    }

    fn host(&self) -> Host {
        if self.root.as_path() == std::path::Path::new("/") {
            Host::live()
        } else {
            Host::fake_tree(&self.root)
        }
    }

    fn state_file(&self, host: &Host) -> PathBuf {
        self.state_file
            .clone()
            .unwrap_or_else(|| host.path(options::DEFAULT_STATE_FILE))
    }
}

fn print_rows(rows: &[Row], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Table => print!("{}", render_table(rows)),
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
    }
    Ok(())
}

/// Prints or writes the commands of a dry run.
fn emit_commands(outcome: &Outcome, args: &ChangeArgs, output: Output) -> anyhow::Result<()> {
    // No `set -e`: like apply, one failing command (say, a driver without
    // coalescing support) must not stop the independent ones after it.
    let mut script =
        String::from("#!/bin/sh\n# Generated by rpk-tune; equivalent to running apply.\n");
    for command in &outcome.commands {
        script.push_str(command);
        script.push('\n');
    }
    if let Some(path) = &args.script {
        std::fs::write(path, &script).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "wrote {} commands to {}",
            outcome.commands.len(),
            path.display()
        );
    } else if matches!(output, Output::Table) {
        print!("{script}");
    }
    if matches!(output, Output::Json) {
        let value = serde_json::json!({ "rows": outcome.rows, "commands": outcome.commands });
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<i32> {
    let global = &cli.global;
    let host = global.host();
    let opts = global.options();
    let selection = Selection {
        only: global.only.clone(),
        skip: global.skip.clone(),
    };
    match &cli.command {
        Command::List => {
            for name in rpk_tune::tuners::names() {
                println!("{name}");
            }
            Ok(0)
        }
        Command::Check => {
            let rows = rpk_tune::check(&host, &opts, &selection)?;
            print_rows(&rows, global.output)?;
            Ok(engine::check_exit_code(&rows))
        }
        Command::Apply(args) => {
            let dry_run = args.dry_run || args.script.is_some();
            let outcome =
                rpk_tune::apply(&host, &opts, &selection, dry_run, &global.state_file(&host))?;
            if dry_run {
                emit_commands(&outcome, args, global.output)?;
                return Ok(0);
            }
            print_rows(&outcome.rows, global.output)?;
            if matches!(global.output, Output::Table) {
                let changed = outcome.rows.iter().filter(|r| r.previous.is_some()).count();
                println!(
                    "{changed} value(s) changed; originals saved in {}",
                    global.state_file(&host).display()
                );
            }
            Ok(engine::apply_exit_code(&outcome.rows))
        }
        Command::Rollback(args) => {
            let dry_run = args.dry_run || args.script.is_some();
            let state_file = global.state_file(&host);
            let outcome = rpk_tune::rollback(&host, &state_file, dry_run)?;
            if dry_run {
                emit_commands(&outcome, args, global.output)?;
                return Ok(0);
            }
            if outcome.rows.is_empty() && matches!(global.output, Output::Table) {
                println!("nothing to roll back: no state in {}", state_file.display());
                return Ok(0);
            }
            print_rows(&outcome.rows, global.output)?;
            Ok(engine::apply_exit_code(&outcome.rows))
        }
    }
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors by itself, matching EXIT_USAGE.
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("rpk-tune: {error:#}");
            let code = match error.downcast_ref::<Error>() {
                Some(Error::Usage(_)) => EXIT_USAGE,
                _ => EXIT_FAILED,
            };
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
