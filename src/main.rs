//! The `portcullis` command: run | check | explain | test | matrix | diff | import | doctor |
//! version | health.

mod health_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis::config::{self, LoadOptions};
use portcullis::policy::matrix::MatrixFormat;
use portcullis::policy::run::TestFormat;
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
    /// Validate the config and exit 0 (valid) or 1 (every error, each with file:line:col and
    /// key); also runs the config's `[[test]]` tables (and --tests FILE) and fails on a failure.
    Check(CheckArgs),
    /// Run the policy tests (`[[test]]` tables) offline: exit 0 all pass, 1 a failure, 2 a
    /// config error.
    Test(TestArgs),
    /// Route × identity → decision, offline.
    Matrix(MatrixArgs),
    /// The decisions two configs disagree on (exit 0: none, 1: some changed, 2: config error).
    Diff(DiffArgs),
    /// Show which route a request matches, what it requires and, with a token, the decision.
    Explain(ExplainArgs),
    /// Print the version, the git commit and the build date.
    Version,
    /// Check a provider end to end (discovery, issuer, redirect URI, credentials, clock; with
    /// --token the token's signature, audience and roles): one PASS/WARN/FAIL line per check,
    /// exit 0 when none failed.
    Doctor(DoctorArgs),
    /// Exit 0 when the admin listener reports ready (GET /readyz answers 2xx), 1 otherwise.
    Health(HealthArgs),
    /// Convert another proxy's configuration into a portcullis config (stdout or --out) and a
    /// report of what could not be carried over (stderr).
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// From oauth2-proxy: its config file and/or its OAUTH2_PROXY_* environment.
    #[command(name = "oauth2-proxy")]
    Oauth2Proxy(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The oauth2-proxy config file (oauth2-proxy.cfg).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Also read the OAUTH2_PROXY_* environment variables (they win over the file).
    #[arg(long)]
    env: bool,
    /// Write the portcullis config here (mode 0600) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    /// A file of `[[test]]` tables to run as well.
    #[arg(long)]
    tests: Option<PathBuf>,
}

#[derive(Args)]
struct DoctorArgs {
    /// The provider to check (default: the only one).
    #[arg(long)]
    provider: Option<String>,
    /// An access token to check too (JWT or opaque; `Bearer ` prefix optional). It may
    /// start with `-` (opaque tokens are random base64url).
    #[arg(long, allow_hyphen_values = true)]
    token: Option<String>,
    /// Also sign a user in: open the printed URL, paste back the address the browser ends on;
    /// reports the ID token, userinfo (roles, email) and the access token's kind.
    #[arg(long)]
    login: bool,
}

#[derive(Args)]
struct TestArgs {
    /// A file of `[[test]]` tables (run after the config's own).
    #[arg(long)]
    tests: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TestFormat::Text)]
    format: TestFormat,
}

#[derive(Args)]
struct MatrixArgs {
    /// A file of `[[identity]]` tables (name, and claims or token); default: derived from
    /// the config's requirements.
    #[arg(long)]
    identities: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MatrixFormat::Text)]
    format: MatrixFormat,
}

#[derive(Args)]
struct DiffArgs {
    /// The config before the change.
    old: PathBuf,
    /// The config after the change.
    new: PathBuf,
    #[arg(long)]
    identities: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MatrixFormat::Text)]
    format: MatrixFormat,
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
    /// Offline: judge a synthetic identity with these claims (a JSON object; `roles` is a
    /// list of role names). No provider is contacted, nothing is verified.
    #[arg(long)]
    claims: Option<String>,
    /// A session cookie's value (or `name=value; …` as the browser sends it), opened with the
    /// configured session secret (the Redis store, when configured, is asked for it). It may
    /// start with `-` (base64url).
    #[arg(long, allow_hyphen_values = true)]
    cookie: Option<String>,
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
        Some(Command::Doctor(a)) => {
            let c = match load(&cli.cfg) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(rt) = runtime() else {
                return ExitCode::from(2);
            };
            let run =
                portcullis::doctor::doctor(&c, a.provider.as_deref(), a.token.as_deref(), a.login);
            let limit = portcullis::doctor::total(a.login);
            let result = rt.block_on(async { tokio::time::timeout(limit, run).await });
            // a `--login` still waiting on stdin must not hold the exit
            rt.shutdown_background();
            match result {
                Ok((report, ok)) => {
                    print!("{report}");
                    ExitCode::from(u8::from(!ok))
                }
                Err(_) => {
                    println!("FAIL doctor: not done within {limit:?}");
                    ExitCode::from(1)
                }
            }
        }
        Some(Command::Health(a)) => health_cmd::run(&a.url, a.timeout),
        Some(Command::Import(ImportCommand::Oauth2Proxy(a))) => import_oauth2_proxy(&a),
        Some(Command::Check(a)) => match load(&cli.cfg) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok ({} route{}, {} provider{})",
                    c.source.display(),
                    c.routes.len(),
                    if c.routes.len() == 1 { "" } else { "s" },
                    c.providers.len(),
                    if c.providers.len() == 1 { "" } else { "s" }
                );
                let tests = match tests_of(&c, a.tests.as_deref(), &cli.cfg) {
                    Ok(t) => t,
                    Err(()) => return ExitCode::from(1),
                };
                if tests.is_empty() {
                    return ExitCode::SUCCESS;
                }
                match run_tests(&c, &tests, TestFormat::Text) {
                    0 => ExitCode::SUCCESS,
                    _ => ExitCode::from(1),
                }
            }
            Err(code) => code,
        },
        Some(Command::Test(a)) => {
            let c = match load(&cli.cfg) {
                Ok(c) => c,
                Err(_) => return ExitCode::from(2),
            };
            let tests = match tests_of(&c, a.tests.as_deref(), &cli.cfg) {
                Ok(t) => t,
                Err(()) => return ExitCode::from(2),
            };
            if tests.is_empty() {
                eprintln!(
                    "error: no policy tests: add [[test]] tables to {} or pass --tests FILE",
                    c.source.display()
                );
                return ExitCode::from(2);
            }
            ExitCode::from(run_tests(&c, &tests, a.format))
        }
        Some(Command::Matrix(a)) => {
            let c = match load(&cli.cfg) {
                Ok(c) => c,
                Err(_) => return ExitCode::from(2),
            };
            let ids = match &a.identities {
                Some(p) => match config::load_identities(p) {
                    Ok(ids) => ids,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => portcullis::policy::matrix::default_identities(&c),
            };
            let Some(rt) = runtime() else {
                return ExitCode::from(2);
            };
            let rows = rt.block_on(portcullis::policy::matrix::matrix(&c, &ids));
            print!(
                "{}",
                portcullis::policy::matrix::render(&rows, &ids, a.format)
            );
            ExitCode::SUCCESS
        }
        Some(Command::Diff(a)) => {
            let load_one = |p: &PathBuf| {
                let args = ConfigArgs {
                    config: Some(p.clone()),
                    ..cli.cfg.clone()
                };
                load(&args)
            };
            let (Ok(old), Ok(new)) = (load_one(&a.old), load_one(&a.new)) else {
                return ExitCode::from(2);
            };
            let ids = match &a.identities {
                Some(p) => match config::load_identities(p) {
                    Ok(ids) => ids,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => portcullis::policy::matrix::diff_identities(&old, &new),
            };
            let Some(rt) = runtime() else {
                return ExitCode::from(2);
            };
            let changes = rt.block_on(portcullis::policy::matrix::diff(&old, &new, &ids));
            print!(
                "{}",
                portcullis::policy::matrix::render_diff(&changes, a.format)
            );
            ExitCode::from(u8::from(!changes.is_empty()))
        }
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
                cfg,
                &a.method,
                &a.url,
                &a.headers,
                portcullis::explain::Offline {
                    claims: a.claims,
                    cookie: a.cookie,
                },
            ))
        }
        Some(Command::Run) | None => serve(&cli.cfg),
    }
}

/// A single-threaded runtime for the offline commands.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

/// The config's `[[test]]` tables, then those of `--tests FILE`; `Err` after printing errors.
fn tests_of(
    c: &portcullis::Config,
    file: Option<&std::path::Path>,
    args: &ConfigArgs,
) -> Result<Vec<config::PolicyTest>, ()> {
    let mut tests = c.tests.clone();
    if let Some(f) = file {
        let opts = LoadOptions {
            env_file: args.env_file.clone(),
        };
        match config::load_tests(f, c, &opts) {
            Ok(t) => tests.extend(t),
            Err(e) => {
                eprintln!("{e}");
                let n = e.0.len();
                eprintln!(
                    "{n} error{} in {}",
                    if n == 1 { "" } else { "s" },
                    f.display()
                );
                return Err(());
            }
        }
    }
    Ok(tests)
}

/// Runs the policy tests and prints the report; 0 when all pass, else 1.
fn run_tests(c: &portcullis::Config, tests: &[config::PolicyTest], format: TestFormat) -> u8 {
    let Some(rt) = runtime() else {
        return 2;
    };
    let results = rt.block_on(portcullis::policy::run::run_tests(c, tests));
    print!("{}", portcullis::policy::run::report(&results, format));
    u8::from(results.iter().any(|r| !r.passed()))
}

/// `import oauth2-proxy`: 0 with the config written (the report may list settings not carried
/// over), 2 when the input cannot be read or parsed.
fn import_oauth2_proxy(a: &ImportArgs) -> ExitCode {
    let env: Option<Vec<(String, String)>> = a.env.then(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("OAUTH2_PROXY_"))
            .collect()
    });
    let imported = match portcullis::import::oauth2_proxy::import(a.from.as_deref(), env.as_deref())
    {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(out) = &a.out {
        if let Err(e) = write_private(out, &imported.toml) {
            eprintln!("error: {}: cannot write: {e}", out.display());
            return ExitCode::from(2);
        }
    } else {
        print!("{}", imported.toml);
    }
    eprint!("{}", imported.report.render("oauth2-proxy"));
    if let Some(out) = &a.out {
        eprintln!(
            "wrote {}; validate it with `portcullis check --config {}`",
            out.display(),
            out.display()
        );
    }
    ExitCode::SUCCESS
}

/// Writes a file only its owner can read: the config may hold secrets.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

fn serve(args: &ConfigArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let cfg = match load(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "config");
    }
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
