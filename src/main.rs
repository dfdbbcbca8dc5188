use clap::Parser;
use sagemaker_executor::config::{Cli, Command};
use std::process::ExitCode;

mod serve;

#[tokio::main]
async fn main() -> ExitCode {
    // A config file only fills in settings that neither a flag nor the environment gives.
    if let Err(e) = sagemaker_executor::config::apply_config_file(std::env::args_os()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    // Every HTTP client of this process uses the AWS SDK's TLS provider (see connection::tls).
    sagemaker_executor::connection::tls::install_default_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXECUTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sagemaker_executor::redact::Stderr);
    match &cli.command {
        Command::Serve(args) if args.log_format == "json" => {
            logs.json().with_current_span(true).init();
        }
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let result = match cli.command {
        Command::Runs { client, command } => {
            return match sagemaker_executor::cli::run(client, command).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", e.message);
                    ExitCode::from(e.code)
                }
            };
        }
        Command::Serve(args) => serve::serve(*args).await,
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .map(|_| {
                    println!(
                        "{}",
                        sagemaker_executor::api::auth::hash_token(
                            token.trim_end_matches(['\r', '\n'])
                        )
                    )
                })
                .map_err(|e| e.to_string())
        }
        Command::Workflows => sagemaker_executor::workflows::load_definitions()
            .map(|defs| print!("{}", sagemaker_executor::workflows::markdown(&defs)))
            .map_err(|e| e.to_string()),
        Command::Openapi => {
            print!("{}", sagemaker_executor::api::spec_json());
            Ok(())
        }
        Command::MigrateStore(args) => migrate_store(&args).await,
        Command::Migrate(db) => sagemaker_executor::store::Store::open(&db.database_url)
            .await
            .map(|_| {
                eprintln!(
                    "database is migrated: {}",
                    sagemaker_executor::store::printable_url(&db.database_url)
                )
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate-store`: SQLite to PostgreSQL (see `store::copy`).
async fn migrate_store(args: &sagemaker_executor::config::MigrateStoreArgs) -> Result<(), String> {
    use sagemaker_executor::store::{Scheme, copy, printable_url};
    if Scheme::of(&args.from) != Scheme::Sqlite || Scheme::of(&args.to) != Scheme::Postgres {
        return Err(
            "migrate-store copies a SQLite database (--from sqlite://…) to a PostgreSQL \
                    database (--to postgres://…)"
                .into(),
        );
    }
    let copied = copy::sqlite_to_postgres(&args.from, &args.to, chrono::Utc::now())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "copied {copied} from {} to {}; start the replicas on the new database with the same \
         secret key",
        args.from,
        printable_url(&args.to)
    );
    Ok(())
}
