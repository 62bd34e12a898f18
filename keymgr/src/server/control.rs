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

use super::{Event, ServerError};
use crate::ids::MemberId;
use crate::manager::KeyManager;
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

impl ControlReply {
    pub(super) fn new<S: Store, W: KeyWrapper>(
        km: &KeyManager<S, W>,
        connected: &[MemberId],
        revoked: &Revocations,
    ) -> Self {
        let view = km.view();
        let mut refused: std::collections::BTreeMap<String, RefusedMember> = km
            .refusals()
            .iter()
            .map(|(name, r)| {
                let entry = RefusedMember {
                    name: name.clone(),
                    reason: r.reason.clone(),
                    count: r.count,
                };
                (name.clone(), entry)
            })
            .collect();
        for (name, n) in revoked.attempts() {
            let e = refused.entry(name.clone()).or_insert(RefusedMember {
                name,
                reason: String::new(),
                count: 0,
            });
            e.reason = "revoked: TLS handshake refused (certificate_revoked)".into();
            e.count += n;
        }
        Self {
            epoch: view.epoch.0,
            pending: km.pending_epoch().map(|e| e.0),
            members: view.members.iter().map(|m| m.name.clone()).collect(),
            connected: view
                .members
                .iter()
                .filter(|m| connected.contains(&m.id))
                .map(|m| m.name.clone())
                .collect(),
            refused: refused.into_values().collect(),
        }
    }
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

/// Answer one client of the control socket.
pub(super) async fn serve(stream: UnixStream, events: mpsc::UnboundedSender<Event>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let answer: Result<ControlReply, String> = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => {
            let (reply, rx) = oneshot::channel();
            if events.send(Event::Control { req, reply }).is_err() {
                return;
            }
            rx.await.map_err(|_| "the key manager stopped".to_owned())
        }
        Err(e) => Err(format!("bad request: {e}")),
    };
    // Result<struct, String> always serializes.
    let mut out = serde_json::to_vec(&answer).expect("control reply serializes");
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}
