//! One member's QUIC connection: identity from its certificate, `Join` on
//! the first stream, then messages in both directions until either side ends.
//!
//! The stream is read in its own task (reading a length-prefixed message is
//! not cancel-safe, so it never sits in a `select!`); writes and closes come
//! from the core task through a channel, in order.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{Instrument, debug, info, info_span};
use von_crypto::cert::Holder;

use super::{ConnCmd, Event};
use crate::Epoch;
use crate::manager::Identity;
use crate::proto::ClientMsg;
use crate::wire::read_msg;

/// How long a new connection may take to send `Join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshake refusals already logged, by peer address and reason: each is
/// logged once, however often the peer retries.
#[derive(Debug, Clone, Default)]
pub(super) struct Refusals(Arc<Mutex<HashSet<(IpAddr, String)>>>);

impl Refusals {
    fn log(&self, peer: SocketAddr, reason: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 4096 {
            seen.clear();
        }
        if seen.insert((peer.ip(), crate::tls::once_key(reason))) {
            info!(%peer, %reason, "connection refused");
        }
    }
}

/// Serve one incoming connection to its end.
pub(super) async fn serve(
    incoming: quinn::Incoming,
    conn_id: u64,
    events: mpsc::UnboundedSender<Event>,
    refusals: Refusals,
) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => return refusals.log(peer, &e.to_string()),
    };
    let who = match identity(&conn) {
        Ok(who) => who,
        Err(reason) => {
            refusals.log(peer, &reason);
            conn.close(1u32.into(), reason.as_bytes());
            return;
        }
    };
    let span = info_span!("member", name = %who.name, id = who.id.0, %peer);
    run(conn, conn_id, who, events).instrument(span).await;
}

async fn run(
    conn: quinn::Connection,
    conn_id: u64,
    who: Identity,
    events: mpsc::UnboundedSender<Event>,
) {
    let (mut send, mut recv) = match timeout(JOIN_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return debug!(error = %e, "connection ended before opening a stream"),
        Err(_) => return conn.close(2u32.into(), b"no control stream within 10 s"),
    };
    let (underlay, have) = match timeout(JOIN_TIMEOUT, read_msg::<ClientMsg, _>(&mut recv)).await {
        Ok(Ok(Some(ClientMsg::Join {
            underlay,
            have_epoch,
        }))) => (underlay, have_epoch.map(Epoch)),
        Ok(Ok(Some(other))) => {
            debug!(?other, "first message was not Join");
            return conn.close(2u32.into(), b"the first message must be Join");
        }
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
            return conn.close(2u32.into(), b"no Join within 10 s");
        }
    };
    let member = who.id;
    let (tx, mut rx) = mpsc::unbounded_channel();
    if events
        .send(Event::Join {
            conn: conn_id,
            who,
            underlay,
            have,
            tx,
        })
        .is_err()
    {
        return;
    }
    let reader_events = events.clone();
    let reader = tokio::spawn(
        async move {
            loop {
                match read_msg::<ClientMsg, _>(&mut recv).await {
                    Ok(Some(msg)) => {
                        let ev = Event::Msg {
                            conn: conn_id,
                            member,
                            msg,
                        };
                        if reader_events.send(ev).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(error = %e, "control stream ended");
                        break;
                    }
                }
            }
            let _ = reader_events.send(Event::Closed {
                conn: conn_id,
                member,
            });
        }
        .in_current_span(),
    );
    while let Some(cmd) = rx.recv().await {
        let quiet = matches!(cmd, ConnCmd::CloseQuiet(_));
        match cmd {
            ConnCmd::Send(mut frame) => {
                // Chunks are shared with the other members' frames, not copied.
                if let Err(e) = send.write_all_chunks(&mut frame).await {
                    debug!(error = %e, "write failed");
                    break;
                }
            }
            ConnCmd::Close(reason) | ConnCmd::CloseQuiet(reason) => {
                if quiet {
                    // The core logged it, rate-limited per member.
                    debug!(%reason, "closing");
                } else {
                    info!(%reason, "closing");
                }
                // Let a final Refused reach the member before closing.
                let _ = send.finish();
                let _ = timeout(Duration::from_secs(1), send.stopped()).await;
                conn.close(0u32.into(), reason.as_bytes());
                break;
            }
        }
    }
    reader.abort();
}

/// The member's identity from the certificate the handshake verified.
fn identity(conn: &quinn::Connection) -> Result<Identity, String> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no client certificate")?;
    let leaf = certs.first().ok_or("empty client certificate chain")?;
    let info = von_crypto::cert::inspect(leaf).map_err(|e| e.to_string())?;
    match info.extension.holder {
        Holder::Member(id) => Ok(Identity {
            id: id.member_id,
            name: id.name.to_string(),
            address: id.addr.addr(),
            prefix_len: id.addr.prefix_len(),
            noise_public: *id.noise_public.as_bytes(),
        }),
        other => Err(format!(
            "certificate role {} cannot join",
            other.role().as_str()
        )),
    }
}
