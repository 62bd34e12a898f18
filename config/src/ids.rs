//! Numeric identities: ON id, member id and key epoch.
//!
//! They mirror `von-crypto`'s frame newtypes; config keeps its own so it
//! depends on nothing but serde, and the agent converts with `.value()`.

use crate::ValueError;
use crate::macros::serde_via_int;

/// A VON's globally unique ON id, the first 4 bytes of every frame; 0 is
/// reserved as "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnId(u32);

/// A member's id, the frame's sender field; 0 is reserved as "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u32);

/// A key epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u32);

impl OnId {
    /// The id as carried in the frame.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl MemberId {
    /// The id as carried in the frame.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl Epoch {
    /// The epoch as carried in the frame.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for OnId {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        nonzero_u32(n, "an ON id", 7).map(Self)
    }
}

impl TryFrom<i64> for MemberId {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        nonzero_u32(n, "a member id", 1).map(Self)
    }
}

/// `n` as a frame id field: 1 to `u32::MAX`, 0 being reserved as "none".
fn nonzero_u32(n: i64, what: &str, example: u32) -> Result<u32, ValueError> {
    u32::try_from(n).ok().filter(|v| *v != 0).ok_or_else(|| {
        ValueError::new(format_args!(
            "{n} is not {what}; use 1 to {} (0 is reserved; example: {example})",
            u32::MAX
        ))
    })
}

impl TryFrom<i64> for Epoch {
    type Error = ValueError;
    fn try_from(n: i64) -> Result<Self, ValueError> {
        u32::try_from(n).map(Self).map_err(|_| {
            ValueError::new(format_args!(
                "{n} is not an epoch; use 0 to {} (example: 1)",
                u32::MAX
            ))
        })
    }
}

serde_via_int!(OnId, u32);
serde_via_int!(MemberId, u32);
serde_via_int!(Epoch, u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(OnId::try_from(7).unwrap().value(), 7);
        assert_eq!(
            OnId::try_from(i64::from(u32::MAX)).unwrap().value(),
            u32::MAX
        );
        assert_eq!(
            OnId::try_from(0).unwrap_err().to_string(),
            "0 is not an ON id; use 1 to 4294967295 (0 is reserved; example: 7)"
        );
        assert!(OnId::try_from(1 << 32).is_err());
        assert_eq!(MemberId::try_from(1).unwrap().value(), 1);
        assert!(
            MemberId::try_from(0)
                .unwrap_err()
                .to_string()
                .contains("member id")
        );
        assert!(MemberId::try_from(-3).is_err());
        assert_eq!(Epoch::try_from(0).unwrap().value(), 0);
        assert!(
            Epoch::try_from(-1)
                .unwrap_err()
                .to_string()
                .contains("not an epoch")
        );
    }
}
