//! The replicas' one connection to etcd: a client per endpoint on a runtime
//! thread of its own, every request bounded in time and tried on the next
//! endpoint when one fails.
//!
//! Why a thread of its own: the [`Store`](crate::store::Store) trait is
//! synchronous (the key manager's core calls it inline), so the etcd store
//! blocks its caller until etcd answers. Blocking on a future that runs on
//! another runtime is safe from any thread, inside tokio or not; blocking on
//! one that needs the caller's own runtime could deadlock it.
//!
//! Why one client per endpoint rather than etcd-client's balanced channel:
//! the order of failover is then ours and plain (stay on the endpoint that
//! last answered; on an error or a timeout try the next), and a member that
//! hangs without closing its socket costs one timeout, not every request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// etcd could not be reached, or refused the request.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "etcd unavailable ({detail}); check the etcd endpoints in keymgr.toml and that a quorum of the cluster is up"
)]
pub struct EtcdError {
    /// What each endpoint answered.
    pub detail: String,
}

/// Key names under the VON's prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is added when missing).
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Who leads: created with the leader's lease, so it vanishes with it.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// The highest epoch ever reserved (decimal).
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// Prefix of the committed members (`members/<id>`, JSON).
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    /// One committed member.
    pub fn member(&self, id: u32) -> String {
        format!("{}members/{id}", self.prefix)
    }

    /// Prefix of the revoked names (`revoked/<name>`).
    pub fn revocations(&self) -> String {
        format!("{}revoked/", self.prefix)
    }

    /// One revoked name.
    pub fn revoked(&self, name: &str) -> String {
        format!("{}revoked/{name}", self.prefix)
    }

    /// Prefix of the live replicas (`replicas/<name>`, each under its own lease).
    pub fn replicas(&self) -> String {
        format!("{}replicas/", self.prefix)
    }

    /// One replica's presence key.
    pub fn replica(&self, name: &str) -> String {
        format!("{}replicas/{name}", self.prefix)
    }
}

/// One etcd endpoint as `von keymgr status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointHealth {
    /// `IP:PORT` as configured.
    pub endpoint: String,
    /// The member answered a status request and knows a raft leader.
    pub healthy: bool,
    /// Its version, or why it did not answer.
    pub detail: String,
}

/// A cheap handle (clone it freely) to the etcd cluster.
#[derive(Debug, Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::runtime::Handle,
    clients: Vec<(String, Client)>,
    /// The endpoint that answered last; requests start there.
    preferred: AtomicUsize,
    timeout: Duration,
    patience: Duration,
    keys: Keys,
    /// Dropping it (with the last handle) ends the runtime thread.
    _stop: std::sync::mpsc::Sender<()>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.clients.iter().map(|(e, _)| e.as_str()).collect();
        f.debug_struct("Etcd")
            .field("endpoints", &endpoints)
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Clients for `endpoints` (`IP:PORT` or URLs), each try of a request
    /// bounded by `timeout`, a request retried over every endpoint for up to
    /// `patience` (long enough for etcd to elect a new raft leader). Connects
    /// lazily: this succeeds while etcd is down.
    pub fn connect(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
        patience: Duration,
    ) -> Result<Self, EtcdError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("von-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("von-etcd-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Until every handle is gone; then the runtime drops here,
                // outside any async context.
                let _ = stopped.recv();
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| EtcdError {
                detail: format!("cannot start the etcd thread: {e}"),
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|detail| EtcdError { detail })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(1), timeout)
            // A member cut off from the quorum answers at once instead of
            // serving stale reads or hanging.
            .with_require_leader(true);
        let urls: Vec<(String, String)> = endpoints
            .iter()
            .map(|ep| {
                let url = if ep.contains("://") {
                    ep.clone()
                } else {
                    format!("http://{ep}")
                };
                (ep.clone(), url)
            })
            .collect();
        let clients = run_on(&handle, timeout * 4, async move {
            let mut clients = Vec::with_capacity(urls.len());
            for (ep, url) in urls {
                let client = Client::connect([url], Some(options.clone()))
                    .await
                    .map_err(|e| EtcdError {
                        detail: format!("{ep}: {}", short(&e)),
                    })?;
                clients.push((ep, client));
            }
            Ok(clients)
        })?;
        if clients.is_empty() {
            return Err(EtcdError {
                detail: "no endpoints configured".into(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                handle,
                clients,
                preferred: AtomicUsize::new(0),
                timeout,
                patience: patience.max(timeout),
                keys: Keys::new(prefix),
                _stop: stop,
            }),
        })
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The etcd runtime, for tasks that talk to etcd (the election).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// Run `f` against the endpoint that answered last, then each other in
    /// turn until one succeeds; each try bounded by the timeout.
    ///
    /// A write that timed out may still have been applied, so `f` must be
    /// safe to repeat (every write of the key manager is: a retried epoch
    /// reservation skips an epoch, never reuses one).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_within(self.inner.patience, f).await
    }

    /// [`call`](Self::call), one round over the endpoints only: for the
    /// lease keep-alive, whose caller retries on its own clock.
    pub async fn call_once<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_within(Duration::ZERO, f).await
    }

    async fn call_within<T, F, Fut>(&self, patience: Duration, f: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.inner.clients.len();
        // Rounds over every endpoint until one answers or the patience runs
        // out: rides out an etcd leader election (a second or two).
        let give_up = tokio::time::Instant::now() + patience;
        let mut errors = Vec::new();
        loop {
            let start = self.inner.preferred.load(Ordering::Relaxed);
            errors.clear();
            for k in 0..n {
                let i = (start + k) % n;
                let (name, client) = &self.inner.clients[i];
                match tokio::time::timeout(self.inner.timeout, f(client.clone())).await {
                    Ok(Ok(v)) => {
                        self.inner.preferred.store(i, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Ok(Err(e)) => errors.push(format!("{name}: {}", short(&e))),
                    Err(_) => errors.push(format!("{name}: no answer in {:?}", self.inner.timeout)),
                }
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(EtcdError {
                    detail: errors.join("; "),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run `fut` on the etcd runtime and wait for it on this thread (any
    /// thread: it never needs the caller's runtime).
    pub fn block<T, Fut>(&self, fut: Fut) -> Result<T, EtcdError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, EtcdError>> + Send + 'static,
    {
        // Each request is bounded; this only guards against a lost task.
        let bound = self.inner.patience * 2 + self.inner.timeout * 4;
        run_on(&self.inner.handle, bound, fut)
    }

    /// Each endpoint's health, asked in parallel.
    pub async fn health(&self) -> Vec<EndpointHealth> {
        let timeout = self.inner.timeout;
        let asks = self.inner.clients.iter().map(|(name, client)| {
            let mut client = client.clone();
            let name = name.clone();
            async move {
                let (healthy, detail) = match tokio::time::timeout(timeout, client.status()).await {
                    Ok(Ok(s)) if s.leader() != 0 => (true, format!("etcd {}", s.version())),
                    Ok(Ok(s)) => (false, format!("etcd {}: no raft leader", s.version())),
                    Ok(Err(e)) => (false, short(&e)),
                    Err(_) => (false, format!("no answer in {timeout:?}")),
                };
                EndpointHealth {
                    endpoint: name,
                    healthy,
                    detail,
                }
            }
        });
        let mut out = Vec::new();
        let handles: Vec<_> = asks.map(|f| self.inner.handle.spawn(f)).collect();
        for h in handles {
            if let Ok(e) = h.await {
                out.push(e);
            }
        }
        out
    }
}

/// Run `fut` on `handle`'s runtime and wait up to `bound` for it on this
/// thread, which may itself be inside another runtime.
fn run_on<T, Fut>(
    handle: &tokio::runtime::Handle,
    bound: Duration,
    fut: Fut,
) -> Result<T, EtcdError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, EtcdError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(bound).unwrap_or_else(|_| {
        Err(EtcdError {
            detail: format!("no answer within {bound:?}"),
        })
    })
}

/// etcd-client's errors carry the whole gRPC status; the message is enough.
fn short(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}
