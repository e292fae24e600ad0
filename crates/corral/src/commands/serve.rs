//! `corral serve`: wires the store, the API server, the scheduler, the controllers and this
//! machine's node agent into one process.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corral_engine::Engine;

use crate::cli::ServeArgs;

pub fn run(engine: Engine, a: ServeArgs) -> Result<()> {
    let dir = engine.root().join("serve");
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    let kubeconfig = a
        .kubeconfig
        .clone()
        .unwrap_or_else(|| engine.root().join("kubeconfig"));
    if a.detach {
        return detach(&dir, &kubeconfig, &a);
    }
    let addr: std::net::SocketAddr = a
        .listen
        .parse()
        .with_context(|| format!("--listen {}: not ADDR:PORT (e.g. 127.0.0.1:6443)", a.listen))?;
    let lock = lock_root(&dir)?;
    // Purge freed pages in the background (after jemalloc's decay, 10 s), so the server's
    // footprint follows what it holds, not what it once held.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!("jemalloc background purging is off: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // An idle blocking thread keeps its stack and allocator cache; a steady trickle of
        // engine calls wakes idle threads in turn and, with tokio's 10 s, keeps a burst's
        // hundred of them alive for good. One second lets the pool shrink back.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .enable_all()
        .build()?;
    let res = rt.block_on(serve(engine, a, addr, &dir, &kubeconfig));
    // Log followers and engine calls on the blocking pool do not hold the process up.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(lock);
    res
}

/// One server per state root: a lock held for the process's life.
fn lock_root(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("serve.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        bail!(
            "another `corral serve` runs on this state root ({}); stop it first",
            dir.display()
        );
    }
    Ok(f)
}

async fn serve(
    engine: Engine,
    a: ServeArgs,
    addr: std::net::SocketAddr,
    dir: &Path,
    kubeconfig: &Path,
) -> Result<()> {
    let store: Arc<dyn corral_store::Store> =
        corral_store::redb::RedbStore::open(&dir.join("store.redb"))
            .context("opening the store")?;
    let names = vec![addr.ip().to_string()];
    let pki = corral_api::pki::Pki::load_or_make(&dir.join("pki"), &names)?;
    let tls = pki.server_config().map_err(anyhow::Error::msg)?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr()?;
    pki.write_kubeconfig(kubeconfig, &format!("https://{host}:{}", bound.port()))?;

    let objects = corral_api::objects::Objects::new(store.clone());
    corral_api::bootstrap(&objects)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);

    let node_name = match &a.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "corral".into()),
    };
    let mut node_cfg = corral_node::NodeConfig::new(node_name.clone());
    node_cfg.network = a.network.clone();
    // Service names go to the records of the pods' network.
    let records = corral_net::store::NetworkStore::open(engine.root()).network_dir(&a.network);
    let agent = Arc::new(corral_node::NodeAgent::new(engine, store.clone(), node_cfg));
    let streams: Arc<dyn corral_api::streams::PodStreams> =
        Arc::new(corral_node::streams::Streams::new(agent.clone()));

    let sched_cfg = corral_control::scheduler::SchedulerConfig {
        score: if a.scheduler_score == "spread" {
            corral_control::scheduler::Score::Spread
        } else {
            corral_control::scheduler::Score::BinPack
        },
        cpu_overcommit: a.cpu_overcommit,
        memory_overcommit: a.memory_overcommit,
        ..Default::default()
    };
    let kinds: Vec<(&'static str, &'static str)> = corral_api::resources::RESOURCES
        .iter()
        .filter(|r| r.namespaced)
        .map(|r| (r.group, r.plural))
        .collect();
    let mut tasks = vec![
        tokio::spawn(corral_control::scheduler::run(
            store.clone(),
            sched_cfg,
            stop.clone(),
        )),
        tokio::spawn(corral_control::namespaces::run(
            store.clone(),
            kinds,
            stop.clone(),
        )),
        tokio::spawn(corral_control::gc::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::volumes::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::replicasets::run(
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(corral_control::deployments::run(
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(corral_control::jobs::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::hpa::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::disruption::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::statefulsets::run(
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(corral_control::daemonsets::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::cronjobs::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::endpoints::run(store.clone(), stop.clone())),
        tokio::spawn(corral_control::loadbalancers::run(
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(corral_control::virtualmachines::run(
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(corral_node::proxy::run(
            store.clone(),
            node_name.clone(),
            Some(records),
            stop.clone(),
        )),
        tokio::spawn(agent.clone().run(stop.clone())),
    ];

    let state = Arc::new(corral_api::http::ApiState {
        objects,
        token: pki.token.clone(),
        streams: Some(streams),
        version: corral_api::version_info(),
    });
    tasks.push(tokio::spawn(corral_api::run(
        listener,
        tls,
        state,
        stop.clone(),
    )));
    eprintln!(
        "corral serve: the Kubernetes API on https://{bound}, node {node_name}; export KUBECONFIG={}",
        kubeconfig.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("corral serve: stopping (pods keep running)");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    Ok(())
}

/// Starts `corral serve` again in the background and returns once it answers.
fn detach(dir: &Path, kubeconfig: &Path, a: &ServeArgs) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log = dir.join("serve.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|x| x != "-d" && x != "--detach")
        .collect();
    let _ = std::fs::remove_file(kubeconfig.with_extension("ready"));
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .context("starting corral serve in the background")?;
    let addr: std::net::SocketAddr = a
        .listen
        .parse()
        .with_context(|| format!("--listen {}", a.listen))?;
    let probe = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!(
                "corral serve exited ({status}) before it answered; see {}",
                log.display()
            );
        }
        if std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(200))
            .is_ok()
            && kubeconfig.exists()
        {
            println!("{}", child.id());
            eprintln!(
                "corral serve runs in the background (pid {}); export KUBECONFIG={}",
                child.id(),
                kubeconfig.display()
            );
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "corral serve did not answer on {} within 30 s; see {}",
        a.listen,
        log.display()
    )
}
