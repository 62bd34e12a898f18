//! The identities every von crate shares, defined once.
//!
//! An underlay is one of the independent networks every frame is copied onto.
//! Members agree on underlays by **name** (`[underlay.NAME]` in von.toml, the
//! endpoints a view lists per member, status and metrics). Inside one agent
//! an underlay is also a **position**, [`Underlay`], in name order: the packet
//! core indexes its arrays and its "seen on" bit masks with it, so the data
//! path never compares strings. [`PerUnderlay`] holds one value per position;
//! [`UnderlayEndpoints`] holds a member's endpoint per name.

#![forbid(unsafe_code)]

mod endpoints;
mod name;
mod per;

pub use endpoints::UnderlayEndpoints;
pub use name::UnderlayName;
pub use per::PerUnderlay;

/// The most underlays one agent runs. Four copies is what SD-WAN products
/// offer at most (Fortinet's duplication allows 4); each copy costs a send.
/// The packet core's per-sequence masks hold one bit per underlay.
pub const MAX_UNDERLAYS: usize = 4;

// Every underlay's bit fits the u8 masks the packet core keeps per sequence.
const _: () = assert!(MAX_UNDERLAYS <= 8);

/// An underlay's position among this agent's underlays (0-based, in name
/// order). Meaningful only inside one agent; between members the name is
/// what counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Underlay(u8);

impl Underlay {
    /// The position `index`, or `None` past [`MAX_UNDERLAYS`].
    pub const fn at(index: usize) -> Option<Self> {
        if index < MAX_UNDERLAYS {
            Some(Self(index as u8))
        } else {
            None
        }
    }

    /// The first underlay: every agent has one.
    pub const FIRST: Underlay = Underlay(0);

    /// Index into per-underlay arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The bit this underlay owns in a per-sequence "seen on" mask.
    pub const fn bit(self) -> u8 {
        1 << self.0
    }
}

/// Why a name, list or container was refused: the message names the value
/// and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError(pub String);

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_stop_at_the_maximum() {
        assert_eq!(Underlay::at(0), Some(Underlay::FIRST));
        assert_eq!(
            Underlay::at(MAX_UNDERLAYS - 1).map(Underlay::bit),
            Some(1 << 3)
        );
        assert_eq!(Underlay::at(MAX_UNDERLAYS), None);
    }
}
