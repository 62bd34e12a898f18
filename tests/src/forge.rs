//! Frames sealed by the test itself, as a member gone rogue would: it holds
//! the group key (the test wrote the view) and uses a real member's id, so
//! the frame authenticates; what it carries is up to the test. This checks
//! the receiver's own rules (e.g. the inner source must be the sender's VON
//! address), which an honest agent never gives it a chance to apply.

use std::net::{Ipv4Addr, Ipv6Addr};

use von_crypto::frame::{HEADER_LEN, OVERHEAD};
use von_crypto::{Cipher, Epoch, Flags, FrameKey, FrameType, GroupKey, Header, MemberId, OnId};

use crate::error::{Error, Result};

/// Seals `inner` as a data frame of VON `on_id` from `sender` at `epoch`
/// with sequence `seq` under the AES-256-GCM group key `key`.
pub fn seal(
    key: &[u8; 32],
    on_id: u32,
    sender: u32,
    epoch: u32,
    seq: u64,
    inner: &[u8],
) -> Result<Vec<u8>> {
    let group = GroupKey::new(Cipher::Aes256Gcm, *key);
    let frame_key = FrameKey::new(&group);
    let header = Header {
        on_id: OnId(on_id),
        frame_type: FrameType::Data,
        flags: Flags::new(Cipher::Aes256Gcm),
        sender: MemberId(sender),
        epoch: Epoch(epoch),
        seq,
    };
    let mut buf = vec![0u8; inner.len() + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    let len = frame_key
        .seal_in_place(&header, &mut buf, inner.len())
        .map_err(|e| Error::Parse {
            what: "frame to forge",
            reason: e.to_string(),
            text: format!("{} inner bytes, seq {seq}", inner.len()),
        })?;
    buf.truncate(len);
    Ok(buf)
}

/// A forged frame carrying an ICMP echo request from `src` to `dst`.
pub fn echo_frame(
    key: &[u8; 32],
    on_id: u32,
    sender: u32,
    seq: u64,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<Vec<u8>> {
    let inner = crate::packet::icmp_echo(src, dst, 0x7e57, 1, b"forged by von-tests");
    seal(key, on_id, sender, 1, seq, &inner)
}

/// A forged frame carrying an ICMPv6 echo request from `src` to `dst`.
pub fn echo6_frame(
    key: &[u8; 32],
    on_id: u32,
    sender: u32,
    seq: u64,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Result<Vec<u8>> {
    let inner = crate::packet::icmp6_echo(src, dst, 0x7e57, 1, b"forged by von-tests");
    seal(key, on_id, sender, 1, seq, &inner)
}

/// What member `at` did with one `frame` that `from` (a host of `topo`)
/// sends it on underlay A, once it has counted the frame's arrival and its
/// verdict: (`delivered`, `inner_source_rejected`, `auth_failures`) added.
pub fn judged_at(
    topo: &crate::Topology,
    tool: &crate::Tool,
    from: usize,
    at: usize,
    von: &str,
    frame: &[u8],
) -> Result<(u64, u64, u64)> {
    use crate::{UNDERLAY_PORT, Underlay};
    let (sender, receiver) = (topo.host(from), topo.host(at));
    let datagram = crate::packet::udp(
        sender.underlay_addr(Underlay::A),
        UNDERLAY_PORT,
        receiver.underlay_addr(Underlay::A),
        UNDERLAY_PORT,
        frame,
    );
    let before = topo.agent(at).counters(von)?;
    tool.send_raw(sender.ns(), &datagram)?;
    // The receiver counts the frame's arrival (`rx_frames`) before its
    // verdict (`delivered`, `inner_source_rejected`, ...): wait for both.
    let after = crate::wait_for(
        "the receiver to receive and judge the forged frame",
        std::time::Duration::from_secs(10),
        || {
            let now = topo.agent(at).counters(von)?;
            let (received, judged) = (
                before.delta_on(&now, Underlay::A, "rx_frames")?,
                before.judged(&now)?,
            );
            Ok(if received >= 1 && judged >= received {
                Ok(now)
            } else {
                Err(format!("{received} frame(s) received, {judged} judged"))
            })
        },
    )?;
    Ok((
        before.delta(&after, "delivered")?,
        before.delta(&after, "inner_source_rejected")?,
        before.delta(&after, "auth_failures")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_frame_opens_under_the_same_key() {
        let key = [7u8; 32];
        let mut frame = echo_frame(
            &key,
            7,
            2,
            42,
            Ipv4Addr::new(100, 64, 1, 2),
            Ipv4Addr::new(100, 64, 1, 1),
        )
        .expect("seals");
        assert_eq!(&frame[..4], &7u32.to_be_bytes(), "ON id first");
        let header = Header::parse_bytes(&frame).expect("header parses");
        assert_eq!((header.sender, header.seq), (MemberId(2), 42));
        let opener = FrameKey::new(&GroupKey::new(Cipher::Aes256Gcm, key));
        let range = opener.open_in_place(&mut frame).expect("authenticates");
        assert_eq!(&frame[range][12..16], &[100, 64, 1, 2], "inner source");
        let mut other = echo_frame(
            &key,
            7,
            2,
            42,
            Ipv4Addr::new(100, 64, 1, 2),
            Ipv4Addr::new(100, 64, 1, 1),
        )
        .expect("seals");
        let wrong = FrameKey::new(&GroupKey::new(Cipher::Aes256Gcm, [8u8; 32]));
        assert!(
            wrong.open_in_place(&mut other).is_err(),
            "another key refuses it"
        );
    }
}
