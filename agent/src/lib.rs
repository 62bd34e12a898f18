//! The von agent: interfaces, underlays, the control client, status and
//! metrics around the packet core. The `von` binary is a thin CLI over this
//! crate.
//!
//! The per-VON packet core lives in `von-packet` (folder `packet/`), a crate
//! with no tokio, socket or TUN dependency; this crate is its driver
//! (`driver.rs`): it reads the TUN and the underlays, hands buffers and `now`
//! to the core and performs the actions it returns. It is a library so that
//! the end-to-end tests can drive the same daemon; only the socket edge
//! (`underlay`) touches the OS below what std and tokio offer.
#![deny(unsafe_code)]

pub mod alarms;
pub mod control;
pub mod driver;
pub mod guard;
pub mod health;
pub mod keymgr_metrics;
pub mod logs;
pub mod metrics;
pub mod preflight;
pub mod reload;
pub mod state;
pub mod static_mode;
pub mod status;
pub mod tun;
pub mod underlay;

// Frame sizes are defined once per layer (config keeps its own so that it
// depends on nothing but serde; the router builds its wire overhead from
// config's). This crate sees every layer, so it ties them together: a
// disagreement fails the build rather than a test run.
const _: () = {
    use von_crypto::frame::{HEADER_LEN, OVERHEAD, TAG_LEN};
    assert!(OVERHEAD == HEADER_LEN + TAG_LEN);
    assert!(von_config::FRAME_OVERHEAD as usize == OVERHEAD);
    assert!(von_packet::OVERHEAD == OVERHEAD);
    assert!(von_packet::PACKET_OFFSET == HEADER_LEN);
    assert!(von_router::WIRE_OVERHEAD == 14 + von_config::OUTER_IPV4_UDP as u64 + OVERHEAD as u64);
};

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_mtu_is_a_1500_byte_outer_packet() {
        let outer = usize::from(von_config::Mtu::DEFAULT.bytes())
            + usize::from(von_config::OUTER_IPV4_UDP)
            + von_crypto::frame::OVERHEAD;
        assert_eq!((von_config::Mtu::DEFAULT.bytes(), outer), (1432, 1500));
    }
}
