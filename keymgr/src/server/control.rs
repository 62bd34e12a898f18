//! The key manager's local control socket: `von keymgr revoke` and
//! `von keymgr rekey` talk to a running key manager here, because the redb
//! store is locked by the process that has it open.
//!
//! `<state_dir>/control.sock`, mode 0600 (root only). One JSON request line,
//! one JSON reply line: `{"cmd":"revoke","name":"h2"}`, `{"cmd":"rekey"}`,
//! `{"cmd":"status"}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::replica::Replica;
use super::{Event, ServerError};
use crate::ids::MemberId;
use crate::manager::KeyManager;
use crate::replica::{EndpointHealth, Etcd, Role};
use crate::store::Store;
use crate::tls::Revocations;
use crate::wrap::KeyWrapper;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Revoke a member by name.
    Revoke {
        /// The member's name.
        name: String,
    },
    /// Rekey now, membership unchanged.
    Rekey,
    /// Report the epoch and members.
    Status,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    /// A replica's role and view of its peers and etcd (absent for a key
    /// manager on its own redb store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaStatus>,
    /// The committed epoch.
    pub epoch: u32,
    /// The epoch being prepared, if any.
    pub pending: Option<u32>,
    /// Names in the committed view.
    pub members: Vec<String>,
    /// Names of members connected now (a member may be in the view and
    /// reconnecting, e.g. after a key manager restart).
    pub connected: Vec<String>,
    /// Members refused so far (joins, views they refused, handshakes of
    /// revoked names), by name: the latest reason and how often.
    #[serde(default)]
    pub refused: Vec<RefusedMember>,
}

/// One refused member in [`ControlReply::refused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMember {
    /// The name its certificate carries.
    pub name: String,
    /// The latest reason.
    pub reason: String,
    /// How many times.
    pub count: u64,
}

/// One replica's place among the VON's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// This replica's name.
    pub name: String,
    /// `leader`, `standby`, `unavailable` (no etcd quorum) or `starting`.
    pub role: String,
    /// Who leads, if known.
    pub leader: Option<String>,
    /// Why it cannot lead, when unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Member joins held while standing by.
    pub held: usize,
    /// The live replicas (name and address), from etcd.
    pub replicas: Vec<String>,
    /// Each etcd endpoint's health.
    pub etcd: Vec<EndpointHealth>,
}

impl ReplicaStatus {
    fn of(r: &Replica) -> Self {
        let (leader, detail) = match &r.role {
            Role::Leader(_) => (Some(r.name.clone()), None),
            Role::Standby { leader } => (leader.clone(), None),
            Role::Unavailable { reason } => (None, Some(reason.clone())),
            Role::Starting => (None, None),
        };
        Self {
            name: r.name.clone(),
            role: r.role.as_str().to_owned(),
            leader,
            detail,
            held: r.held(),
            replicas: Vec::new(),
            etcd: Vec::new(),
        }
    }
}

impl ControlReply {
    /// A standby's answer: no view of its own, but the revoked names whose
    /// handshakes it refused.
    pub(super) fn standby(core: &super::Core) -> Self {
        Self {
            replica: core.replica.as_ref().map(ReplicaStatus::of),
            epoch: 0,
            pending: None,
            members: Vec::new(),
            connected: Vec::new(),
            refused: refused(std::iter::empty(), &core.revoked),
        }
    }

    pub(super) fn new<S: Store, W: KeyWrapper>(
        km: &KeyManager<S, W>,
        connected: &[MemberId],
        revoked: &Revocations,
        replica: Option<&Replica>,
    ) -> Self {
        let view = km.view();
        let by_manager = km.refusals().iter().map(|(name, r)| RefusedMember {
            name: name.clone(),
            reason: r.reason.clone(),
            count: r.count,
        });
        Self {
            replica: replica.map(ReplicaStatus::of),
            epoch: view.epoch.0,
            pending: km.pending_epoch().map(|e| e.0),
            members: view.members.iter().map(|m| m.name.clone()).collect(),
            connected: view
                .members
                .iter()
                .filter(|m| connected.contains(&m.id))
                .map(|m| m.name.clone())
                .collect(),
            refused: refused(by_manager, revoked),
        }
    }
}

/// The manager's refusals merged, by name, with the revoked names' refused
/// handshakes.
fn refused(
    by_manager: impl Iterator<Item = RefusedMember>,
    revoked: &Revocations,
) -> Vec<RefusedMember> {
    let mut refused: std::collections::BTreeMap<String, RefusedMember> =
        by_manager.map(|r| (r.name.clone(), r)).collect();
    for (name, n) in revoked.attempts() {
        let e = refused.entry(name.clone()).or_insert(RefusedMember {
            name,
            reason: String::new(),
            count: 0,
        });
        e.reason = "revoked: TLS handshake refused (certificate_revoked)".into();
        e.count += n;
    }
    refused.into_values().collect()
}

/// Where a key manager with this state directory listens for control requests.
pub fn control_socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Send one request to the key manager at `path`. `NotFound` or
/// `ConnectionRefused` mean no key manager is running there.
pub async fn request(path: &Path, req: &ControlRequest) -> std::io::Result<ControlReply> {
    let mut stream = UnixStream::connect(path).await?;
    // A request enum of strings always serializes.
    let mut line = serde_json::to_vec(req).expect("control request serializes");
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    let parsed: Result<ControlReply, String> = serde_json::from_str(&reply)
        .map_err(|e| std::io::Error::other(format!("unreadable reply {reply:?}: {e}")))?;
    parsed.map_err(std::io::Error::other)
}

/// Bind the socket, replacing a stale one but never a live key manager's.
pub(super) fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |source: std::io::Error| ServerError::Bind {
        addr: path.display().to_string(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a key manager already answers on this control socket",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Answer one client of the control socket. A replica's status also lists
/// the live replicas and each etcd endpoint's health, asked here so the
/// core never waits on etcd for a status.
pub(super) async fn serve(
    stream: UnixStream,
    events: mpsc::UnboundedSender<Event>,
    etcd: Option<Etcd>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let answer: Result<ControlReply, String> = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => {
            let status = req == ControlRequest::Status;
            let (reply, rx) = oneshot::channel();
            if events.send(Event::Control { req, reply }).is_err() {
                return;
            }
            let mut answer = rx
                .await
                .map_err(|_| "the key manager stopped".to_owned())
                .and_then(|r| r);
            if let (
                true,
                Some(etcd),
                Ok(ControlReply {
                    replica: Some(r), ..
                }),
            ) = (status, &etcd, &mut answer)
            {
                r.etcd = etcd.health().await;
                match crate::replica::replicas(etcd).await {
                    Ok((all, leader)) => {
                        r.replicas = all
                            .iter()
                            .map(|i| format!("{} {}", i.name, i.listen))
                            .collect();
                        if r.leader.is_none() {
                            r.leader = leader;
                        }
                    }
                    Err(e) => r.replicas = vec![format!("unknown: {e}")],
                }
            }
            answer
        }
        Err(e) => Err(format!("bad request: {e}")),
    };
    // Result<struct, String> always serializes.
    let mut out = serde_json::to_vec(&answer).expect("control reply serializes");
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}
