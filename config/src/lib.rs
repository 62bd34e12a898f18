//! The configuration schema of von, as types that cannot hold bad values.
//!
//! Kept in its own crate so the agent, the key manager and `von up --check`
//! share one parser and one set of error messages. Three files are read:
//!
//! - `von.toml`, the agent's: [`AgentConfig::load`];
//! - a static view, the same on every member of a static VON: [`StaticView::load`]
//!   (or all of an agent's at once: [`AgentConfig::load_views`]);
//! - `keymgr.toml`, the standalone key manager's: [`KeymgrConfig::load`].
//!
//! Every error names the file, the field path, the bad value and the fix:
//! `von.toml: underlay.b.bind: "198.51.100.1:99999" is not IP:PORT (example: "198.51.100.1:4789")`.
//! The operator's reference is `docs/configuration.md`.
#![forbid(unsafe_code)]

mod agent;
mod error;
mod family;
mod ids;
mod key;
mod keymgr;
mod macros;
mod names;
mod net;
mod secret;
mod units;
mod view;
mod views;

pub use agent::{
    AgentConfig, DEFAULT_BURST_PACKETS, DEFAULT_BURST_TIME, DEFAULT_CONTROL_SOCKET, DEFAULT_LOG,
    DEFAULT_STATE_DIR, KeymgrEndpoint, KeymgrMode, MAX_ORDERING, StaticMode, UnderlayConfig,
    VonConfig, VonMode,
};
pub use error::{ConfigError, ValueError};
pub use family::{VonAddresses, VonPrefixes};
pub use ids::{Epoch, MemberId, OnId};
pub use key::{Cipher, HexKey};
pub use keymgr::{DEFAULT_KEYMGR_STATE_DIR, EtcdSettings, KeymgrConfig, Timers};
pub use names::{IFNAME_MAX, INTERFACE_PREFIX, InterfaceName, MemberName, VonName};
pub use net::{Dscp, Endpoint, FRAME_OVERHEAD, Mtu, OUTER_IPV4_UDP, OUTER_IPV6_UDP, Prefix};
pub use secret::private_key_problem;
pub use units::{ByteSize, Period, Rate};
pub use view::{Member, StaticView};
pub use views::{IPV6_MIN_MTU, LocalView};
pub use von_ids::{MAX_UNDERLAYS, PerUnderlay, Underlay, UnderlayEndpoints, UnderlayName};
