//! The `portcullis` command: run | check | explain | version | health.

mod health_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis::config::{self, LoadOptions};
use portcullis::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Authenticating reverse proxy: OpenID Connect login, bearer tokens and role rules in front of unmodified apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Global: before or after the subcommand (`portcullis --env-file .env check -c x.toml`).
    #[command(flatten)]
    cfg: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate the config and exit 0 (valid) or 1 (every error, each with file:line:col and key).
    Check,
    /// Show which route a request matches, what it requires and, with a token, the decision.
    Explain(ExplainArgs),
    /// Print the version, the git commit and the build date.
    Version,
    /// Exit 0 when the admin listener reports ready (GET /readyz answers 2xx), 1 otherwise.
    Health(HealthArgs),
}

#[derive(Args)]
struct HealthArgs {
    /// URL to probe (plain http://).
    #[arg(
        long,
        env = "PORTCULLIS_HEALTH_URL",
        default_value = "http://127.0.0.1:9090/readyz"
    )]
    url: String,
    /// Give up (not ready) after this long: connect, send and answer together.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// Config file (TOML).
    #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// A .env file whose variables `${VAR}` may use (the process environment wins).
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    /// Log format (`run`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT", global = true)]
    log_format: LogFormat,
}

#[derive(Args)]
struct ExplainArgs {
    /// HTTP method, e.g. GET.
    method: String,
    /// Full URL (http://host/path?query) or a path.
    url: String,
    /// Extra request header, e.g. 'Authorization: Bearer eyJ…' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

fn load(args: &ConfigArgs) -> Result<portcullis::Config, ExitCode> {
    let Some(path) = &args.config else {
        eprintln!("error: no config file: pass --config FILE or set PORTCULLIS_CONFIG");
        return Err(ExitCode::from(2));
    };
    config::load(
        path,
        &LoadOptions {
            env_file: args.env_file.clone(),
        },
    )
    .map_err(|e| {
        eprintln!("{e}");
        let n = e.0.len();
        eprintln!(
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            path.display()
        );
        ExitCode::from(1)
    })
}

// mimalloc: the request path allocates and frees many small buffers across tasks; glibc's
// malloc spent ~5% of CPU there (and trimmed/grew the heap with brk) in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!(
                "portcullis {} (commit {}, built {})",
                env!("CARGO_PKG_VERSION"),
                env!("PORTCULLIS_GIT_COMMIT"),
                env!("PORTCULLIS_BUILD_DATE")
            );
            ExitCode::SUCCESS
        }
        Some(Command::Health(a)) => health_cmd::run(&a.url, a.timeout),
        Some(Command::Check) => match load(&cli.cfg) {
            Ok(c) => {
                println!(
                    "{}: ok ({} route{}, {} provider{})",
                    c.source.display(),
                    c.routes.len(),
                    if c.routes.len() == 1 { "" } else { "s" },
                    c.providers.len(),
                    if c.providers.len() == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Explain(a)) => {
            let cfg = match load(&cli.cfg) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(portcullis::explain::explain(
                cfg, &a.method, &a.url, &a.headers,
            ))
        }
        Some(Command::Run) | None => serve(&cli.cfg),
    }
}

fn serve(args: &ConfigArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let cfg = match load(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // One CPU available (a 1-CPU container, a pinned process): the single-threaded scheduler
    // does the same work without cross-thread queues and wakeups. Otherwise one worker per CPU.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let built = if cpus == 1 && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = LoadOptions {
        env_file: args.env_file.clone(),
    };
    let ran = rt.block_on(portcullis::server::run(cfg, options));
    // The last requests' access-log lines may still be queued for the log thread.
    telemetry::flush(std::time::Duration::from_millis(500));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
