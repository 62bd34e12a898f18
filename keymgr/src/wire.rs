//! Reading and writing length-prefixed control messages on a byte stream
//! (a QUIC stream in practice); the format is in [`crate::proto`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::{ProtoError, body_len, decode, encode};

/// A stream could not carry a control message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the stream mid-message or the transport failed.
    #[error("control stream: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes were not a control message.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// Read one message; `Ok(None)` when the peer finished the stream cleanly
/// between messages.
pub async fn read_msg<T, R>(r: &mut R) -> Result<Option<T>, WireError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; body_len(prefix)?];
    r.read_exact(&mut body).await?;
    Ok(Some(decode(&body)?))
}

/// Write one message.
pub async fn write_msg<T, W>(w: &mut W, msg: &T) -> Result<(), WireError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    w.write_all(&encode(msg)).await?;
    Ok(())
}

/// QUIC transport settings for both ends: keep-alives well inside the idle
/// timeout, so a dead peer's connection ends in seconds (the lease, not the
/// connection, still decides membership).
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        6_000,
    ))));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ClientMsg;

    #[tokio::test]
    async fn messages_cross_a_stream_and_eof_is_clean() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let sent = vec![
            ClientMsg::Renew,
            ClientMsg::Ack { epoch: 9 },
            ClientMsg::Leave,
        ];
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                for m in &sent {
                    write_msg(&mut a, m).await.unwrap();
                }
            })
        };
        let mut got = Vec::new();
        while let Some(m) = read_msg::<ClientMsg, _>(&mut b).await.unwrap() {
            got.push(m);
        }
        writer.await.unwrap();
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn truncated_message_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 10, b'{']).await.unwrap();
        drop(a);
        assert!(read_msg::<ClientMsg, _>(&mut b).await.is_err());
    }
}
