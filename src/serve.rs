//! `serve`: wires the store, AWS clients, engine and HTTP server, and stops them gracefully.

use poem::listener::{Acceptor, Listener};
use sagemaker_executor::api::{self, AppState, Auth, HttpLimits};
use sagemaker_executor::aws::SdkAws;
use sagemaker_executor::aws::sdk::AwsSettings;
use sagemaker_executor::aws::{AwsPort, AwsProvider};
use sagemaker_executor::clock::{Clock, SystemClock};
use sagemaker_executor::config::ServeArgs;
use sagemaker_executor::connection::{AllowList, ConnectionResolver, LookupSettings};
use sagemaker_executor::engine::{Engine, EngineConfig};
use sagemaker_executor::listener;
use sagemaker_executor::secrets::{Secret, SecretBox};
use sagemaker_executor::store::{self, Instance, Store};
use sagemaker_executor::sweep::{SweepSettings, Sweeper};
use sagemaker_executor::workflows::{self, input::InputLimits};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    // The configured secrets are masked in every log line, whoever logs them.
    for secret in [
        &args.operator_token,
        &args.submitter_token,
        &args.connection_token,
        &args.secret_key,
    ]
    .into_iter()
    .flatten()
    {
        sagemaker_executor::redact::register(secret);
    }
    let auth = Auth::configure(
        args.tokens_file.as_deref(),
        args.operator_token.as_deref(),
        args.submitter_token.as_deref(),
        args.open_metrics,
    )?
    .with_token_header(&args.token_header)?
    .with_trusted_clients(&args.trusted_clients)?
    .with_trusted_name(&args.trusted_clients_name)?;
    if !auth.trusted_clients().is_empty() {
        tracing::info!(
            networks = ?auth.trusted_clients(),
            name = %args.trusted_clients_name,
            "trusted client networks get the submitter role without a token"
        );
        if auth.trusted_clients().iter().any(|n| n.ends_with("/0")) {
            tracing::warn!(
                "EXECUTOR_TRUSTED_CLIENTS trusts every address of a family (a /0 network)"
            );
        }
    }
    if auth.enabled() && !auth.has_operator_token() {
        tracing::warn!(
            "no operator token is configured: nobody can retry runs or read other callers' runs"
        );
    }
    if !auth.enabled() {
        if !args.bind.ip().is_loopback() && !args.insecure_no_auth {
            return Err(format!(
                "refusing to serve {} without authentication: configure tokens (EXECUTOR_TOKENS_FILE, \
                 EXECUTOR_OPERATOR_TOKEN, EXECUTOR_SUBMITTER_TOKEN) or EXECUTOR_TRUSTED_CLIENTS, \
                 bind to loopback, or pass --insecure-no-auth",
                args.bind
            ));
        }
        tracing::warn!(bind = %args.bind, "authentication is OFF: every caller has the operator role");
    }
    if let Some(b) = &args.datasets_bucket {
        sagemaker_executor::validate::bucket_name("datasets_bucket", b)
            .map_err(|e| format!("EXECUTOR_DATASETS_BUCKET: {e}"))?;
    }
    let script = workflows::script::ScriptSettings {
        role_arn: args.script_role_arn.clone(),
        image: args.script_image.clone(),
        instance_type: args.script_instance_type.clone(),
        instance_count: args.script_instance_count,
        region: args.script_region.clone(),
        bucket: args.script_bucket.clone(),
        max_input_files: args.script_max_input_files,
        max_input_bytes: args.script_max_input_bytes,
    }
    .validated()?;
    // '#' separates the worker id from the per-start nonce of the lease owner.
    if args.worker_id.trim().is_empty() || args.worker_id.contains('#') {
        return Err(format!(
            "EXECUTOR_WORKER_ID must be non-empty and without '#' (got {:?})",
            args.worker_id
        ));
    }
    let definitions = workflows::load_definitions().map_err(|e| e.to_string())?;
    // Replicas on one PostgreSQL database take over each other's runs, so they must open each
    // other's sealed credentials: one key for all, given, never a key file each made for itself.
    if store::Scheme::of(&args.db.database_url) == store::Scheme::Postgres
        && args.secret_key.is_none()
        && args.secret_key_file.is_none()
    {
        return Err(
            "with a PostgreSQL database every replica must use the same secret key: \
                    set EXECUTOR_SECRET_KEY or EXECUTOR_SECRET_KEY_FILE"
                .into(),
        );
    }
    let store = Store::open(&args.db.database_url)
        .await
        .map_err(|e| format!("opening the store: {e}"))?;
    // This process's own lease identity: the configured worker id plus a per-start nonce, so
    // that two processes configured alike never release or take each other's live leases.
    let lease = Duration::from_secs(args.lease_secs.max(3));
    let instance = Instance::this_process(&args.worker_id, lease);
    sagemaker_executor::metrics::set_instance(&instance.id, &args.worker_id, store.backend());
    store
        .register_instance(&instance, SystemClock.now())
        .await
        .map_err(|e| format!("registering this instance: {e}"))?;
    match store
        .release_dead_leases(&instance, SystemClock.now())
        .await
    {
        Ok(r) => tracing::info!(
            instance = %instance.id,
            released_leases = r.leases,
            dead_instances = ?r.dead_instances,
            "instance started; released only leases of dead instances of this worker id and expired ones"
        ),
        Err(e) => tracing::error!(error = %e, "could not release dead instances' leases"),
    }
    let settings = AwsSettings {
        force_path_style: args.s3_force_path_style,
        operation_timeout: Duration::from_secs(args.aws_timeout_secs),
        multipart_threshold: args.multipart_threshold_bytes,
        rate_limits: args.aws_rate_limits.clone(),
        ..AwsSettings::default()
    };
    let aws = SdkAws::from_env(settings.clone()).await;
    if aws.region().is_none() {
        return Err(
            "no AWS region is configured: set AWS_REGION (or a profile with a region)".into(),
        );
    }
    let aws: Arc<dyn AwsPort> = Arc::new(aws);
    let key_file = args
        .secret_key_file
        .clone()
        .unwrap_or_else(|| default_key_file(&args.db.database_url));
    let secrets = SecretBox::load(args.secret_key.as_deref(), &key_file)?;
    // An empty EXECUTOR_CONNECTION_ALLOW means no backends (lookup off), not one empty entry.
    let backends: Vec<String> = args
        .connection_allow
        .iter()
        .filter(|b| !b.trim().is_empty())
        .cloned()
        .collect();
    let allow = AllowList::parse(&backends)?;
    let connections = if allow.is_empty() {
        None
    } else {
        tracing::info!(backends = ?allow.entries(), "Essedum connection lookup is on");
        Some(ConnectionResolver::with_settings(
            allow,
            LookupSettings {
                token: args.connection_token.clone().map(Secret::new),
                token_header: args.connection_token_header.clone(),
                project_id: args.connection_project_id.clone(),
                ca_file: args.connection_ca_file.clone(),
                ..LookupSettings::new(
                    Duration::from_millis(args.connection_timeout_ms.max(1)),
                    Duration::from_secs(args.connection_cache_secs),
                )
            },
        )?)
    };
    let provider = Arc::new(
        AwsProvider::new(aws.clone(), settings, connections, Arc::new(secrets))
            .with_client_cache(args.aws_client_cache),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        store.clone(),
        clock.clone(),
        provider.clone(),
        EngineConfig {
            owner: instance.id.clone(),
            max_concurrency: args.max_concurrency.max(1),
            lease,
            poll_min: args.poll_min_ms.map(Duration::from_millis),
            poll_max: args.poll_max_ms.map(Duration::from_millis),
            retry_base: args.retry_base_ms.map(Duration::from_millis),
            observe_max_delay: args.observe_max_delay_ms.map(Duration::from_millis),
            drain: Duration::from_secs(args.drain_secs),
            ..EngineConfig::default()
        },
        workflows::handlers(),
        definitions.clone(),
    )
    .map_err(|e| format!("workflow definitions do not match their handlers: {e}"))?;
    // Other replicas' new runs, cancels and retries wake this engine (PostgreSQL).
    let _wakeups = store.forward_wakeups(engine.waker());
    // The List* sweeper (off with an interval of 0): the engine reads its coverage.
    let sweeper = (args.sweep_interval_secs > 0).then(|| {
        Sweeper::new(
            store.clone(),
            provider.clone(),
            clock.clone(),
            engine.waker(),
            SweepSettings {
                interval: Duration::from_secs(args.sweep_interval_secs),
                safety_net: Duration::from_secs(args.sweep_safety_net_secs.max(1)),
                ..SweepSettings::default()
            },
        )
        .with_holder(&instance.id)
    });
    if sweeper.is_none() {
        // Runs a sweep covered before this start wait a safety net for their next describe.
        // Nothing else puts a followed run's next step 15 minutes away (polls, observation
        // backoff and no-progress backoff are capped lower by default).
        match sagemaker_executor::sweep::resume_polling(
            &store,
            clock.now(),
            Duration::from_secs(900),
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                runs = n,
                "sweeping is off: runs a sweep covered are polled again"
            ),
            Err(e) => tracing::warn!(error = %e, "could not make swept runs due again"),
        }
    }
    let engine = Arc::new(match &sweeper {
        Some(s) => engine.with_sweep(s.handle()),
        None => engine,
    });
    let janitor = sagemaker_executor::janitor::Janitor::new(
        store.clone(),
        aws.clone(),
        clock.clone(),
        sagemaker_executor::janitor::JanitorSettings::from_args(&args),
    );
    let state = AppState {
        store: store.clone(),
        clock,
        wake: engine.waker(),
        limits: InputLimits {
            data_dir: args.data_dir.clone(),
            max_inline_csv_bytes: args.max_inline_csv_bytes,
        },
        definitions: Arc::new(definitions),
        aws,
        provider,
        datasets_bucket: args.datasets_bucket.clone(),
        max_dataset_bytes: args.max_dataset_bytes,
        script: Arc::new(script),
        logs: Default::default(),
        readiness: api::Readiness {
            engine: engine.beat(),
            started: SystemClock.now(),
            stall_after: engine_stall_bound(lease),
        },
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_task = tokio::spawn(engine.run(stop_rx.clone()));
    let heartbeat_task = tokio::spawn(heartbeat(store.clone(), instance.clone(), stop_rx.clone()));
    let janitor_task = tokio::spawn(janitor.run(stop_rx.clone()));
    let sweeper_task = sweeper.map(|s| tokio::spawn(s.run(stop_rx.clone())));
    let retention_task = tokio::spawn(prune_history(
        store.clone(),
        args.history_retention_days,
        stop_rx.clone(),
    ));
    // The handler is installed before the socket is announced, so a SIGTERM sent as soon as the
    // service is up stops it gracefully instead of killing it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let listener = poem::listener::TcpListener::bind(args.bind);
    let acceptor = listener
        .into_acceptor()
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let connection_limits = listener::Limits {
        max_connections: args
            .max_connections
            .unwrap_or_else(listener::default_max_connections)
            .max(1),
        header_timeout: Duration::from_secs(args.http_header_timeout_secs.max(1)),
    };
    tracing::info!(
        max_connections = connection_limits.max_connections,
        descriptor_limit = ?listener::descriptor_limit(),
        "HTTP connection cap"
    );
    let acceptor = listener::Guarded::new(acceptor, connection_limits);
    let local = acceptor.local_addr();
    let addr = local
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(args.bind);
    // Tests and scripts wait for this line; it is printed once the socket accepts connections.
    eprintln!("LISTENING {addr}");
    tracing::info!(%addr, database = %store::printable_url(&args.db.database_url), "serving");

    let mut server_stop = stop_rx.clone();
    let server = poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(Duration::from_secs(args.http_idle_timeout_secs.max(1)))
        .run_with_graceful_shutdown(
            api::app(
                state,
                auth,
                HttpLimits {
                    max_body_bytes: args.max_body_bytes,
                    request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
                    max_dataset_bytes: args.max_dataset_bytes,
                    upload_timeout: Duration::from_secs(args.upload_timeout_secs.max(1)),
                    idempotency_retention: Duration::from_secs(
                        args.idempotency_retention_hours.saturating_mul(3600),
                    ),
                },
            ),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
            Some(Duration::from_secs(5)),
        );
    let signals = async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        }
        let _ = stop_tx.send(true);
    };
    let (served, _) = tokio::join!(server, signals);
    served.map_err(|e| format!("server error: {e}"))?;
    engine_task
        .await
        .map_err(|e| format!("engine task failed: {e}"))?;
    let _ = heartbeat_task.await;
    let _ = janitor_task.await;
    if let Some(t) = sweeper_task {
        let _ = t.await;
    }
    // Steps abandoned at the drain deadline dropped their multipart uploads; their aborts finish.
    let open = sagemaker_executor::aws::sdk::settle_uploads(Duration::from_secs(10)).await;
    if open > 0 {
        tracing::warn!(
            open,
            "multipart uploads still open at exit; the janitor aborts them later"
        );
    }
    let _ = retention_task.await;
    // The engine released this instance's leases; it is no longer a holder.
    if let Err(e) = store.remove_instance(&instance).await {
        tracing::warn!(error = %e, "could not remove this instance's record");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// How long the engine loop may go without an iteration before `/readyz` fails: a loop waits at
/// most `idle_max` between iterations, and a claim at most the store's write wait; a few of each
/// plus a lease leaves room for a slow disk without hiding a wedged loop for long.
fn engine_stall_bound(lease: Duration) -> Duration {
    EngineConfig::default().idle_max * 5 + lease
}

/// Beats this instance's heart every third of its lease until the stop signal, so that other
/// processes see it alive (and never take its leases) and find it dead once it stops beating.
async fn heartbeat(store: Store, me: Instance, mut stop: watch::Receiver<bool>) {
    let every = me.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match store.heartbeat_instance(&me, SystemClock.now()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(instance = %me.id, "this instance was taken for dead; registering again");
                if let Err(e) = store.register_instance(&me, SystemClock.now()).await {
                    tracing::warn!(error = %e, "registering this instance again failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "instance heartbeat failed; will retry"),
        }
    }
}

/// Prunes finished runs' history older than `days` (0: never) at start and then hourly.
async fn prune_history(store: Store, days: f64, mut stop: watch::Receiver<bool>) {
    if days <= 0.0 {
        return;
    }
    let keep = Duration::try_from_secs_f64(days * 86_400.0).unwrap_or(Duration::MAX);
    loop {
        let now = SystemClock.now();
        let cutoff = now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        match store.prune_history(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, days, "pruned finished runs' history"),
            Err(e) => tracing::warn!(error = %e, "pruning history failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// `executor.key` beside a SQLite database file (the working directory for other URLs).
fn default_key_file(database_url: &str) -> std::path::PathBuf {
    let path = store::sqlite_file_path(database_url);
    match path
        .as_deref()
        .and_then(|p| std::path::Path::new(p).parent())
    {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("executor.key"),
        _ => std::path::PathBuf::from("executor.key"),
    }
}
