//! [`UnderlayEndpoints`]: where one member receives, per named underlay.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::{IdError, MAX_UNDERLAYS, PerUnderlay, UnderlayName};

/// A member's receiving `IP:PORT` on each underlay it runs, by name, as views,
/// certificates of membership and the key manager carry it. Names are unique
/// by construction; 1 to [`MAX_UNDERLAYS`] entries; no address twice (two
/// underlays sharing an address are one network, which gives no redundancy).
/// Written as a map: `{ a = "192.0.2.1:4789", b = "198.51.100.1:4789" }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct UnderlayEndpoints(BTreeMap<UnderlayName, SocketAddr>);

impl UnderlayEndpoints {
    /// Checks and collects `(name, endpoint)` pairs.
    pub fn new(
        pairs: impl IntoIterator<Item = (UnderlayName, SocketAddr)>,
    ) -> Result<Self, IdError> {
        let mut map = BTreeMap::new();
        for (name, addr) in pairs {
            if map.insert(name, addr).is_some() {
                return Err(IdError(format!("underlay {name:?} is listed twice")));
            }
        }
        let me = Self(map);
        me.check()?;
        Ok(me)
    }

    /// Like [`UnderlayEndpoints::new`] with names as text (tests, tools).
    pub fn from_names<'a>(
        pairs: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    ) -> Result<Self, IdError> {
        let named: Result<Vec<_>, IdError> = pairs
            .into_iter()
            .map(|(n, a)| Ok((n.parse::<UnderlayName>()?, a)))
            .collect();
        Self::new(named?)
    }

    fn check(&self) -> Result<(), IdError> {
        if self.0.is_empty() || self.0.len() > MAX_UNDERLAYS {
            return Err(IdError(format!(
                "{} underlays listed: give 1 to {MAX_UNDERLAYS}, one endpoint per underlay name",
                self.0.len()
            )));
        }
        let mut seen: Vec<(&UnderlayName, &SocketAddr)> = Vec::new();
        for (name, addr) in &self.0 {
            if let Some((other, _)) = seen.iter().find(|(_, a)| *a == addr) {
                return Err(IdError(format!(
                    "\"{addr}\" is the endpoint on both {other:?} and {name:?} (underlays must be independent networks, each with its own address)"
                )));
            }
            seen.push((name, addr));
        }
        Ok(())
    }

    /// The endpoint on the underlay called `name`, if the member runs it.
    pub fn get(&self, name: &UnderlayName) -> Option<SocketAddr> {
        self.0.get(name).copied()
    }

    /// Laid out over an agent's underlays `local` (by position): where to
    /// send this member's copy on each, `None` where it runs no underlay of
    /// that name.
    pub fn on(&self, local: &PerUnderlay<UnderlayName>) -> PerUnderlay<Option<SocketAddr>> {
        local.map(|_, name| self.get(name))
    }

    /// Each underlay name with its endpoint, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (UnderlayName, SocketAddr)> + '_ {
        self.0.iter().map(|(n, a)| (*n, *a))
    }

    /// How many underlays.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a checked value; here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An endpoint as read, with an error that shows the value and an example.
struct Addr(SocketAddr);

impl<'de> serde::Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        text.parse().map(Addr).map_err(|_| {
            serde::de::Error::custom(format_args!(
                "{text:?} is not IP:PORT (examples: \"192.0.2.1:4789\", \"[2001:db8::1]:4789\")"
            ))
        })
    }
}

impl<'de> serde::Deserialize<'de> for UnderlayEndpoints {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<UnderlayName, Addr>::deserialize(d)?;
        let me = Self(map.into_iter().map(|(n, a)| (n, a.0)).collect());
        me.check().map_err(serde::de::Error::custom)?;
        Ok(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> UnderlayName {
        s.parse().unwrap()
    }

    #[test]
    fn checks_count_and_independence() {
        let a: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:4789".parse().unwrap();
        let e = UnderlayEndpoints::new([(n("b"), b), (n("a"), a)]).unwrap();
        assert_eq!(
            e.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            [n("a"), n("b")]
        );
        assert_eq!(e.get(&n("b")), Some(b));
        assert_eq!(e.get(&n("c")), None);

        let same = UnderlayEndpoints::new([(n("a"), a), (n("b"), a)]).unwrap_err();
        assert!(same.0.contains("both \"a\" and \"b\""), "{same}");
        let twice = UnderlayEndpoints::new([(n("a"), a), (n("a"), b)]).unwrap_err();
        assert!(twice.0.contains("listed twice"), "{twice}");
        assert!(UnderlayEndpoints::new([]).is_err());
        let five = (0..5).map(|i| (n(&format!("u{i}")), SocketAddr::from(([192, 0, 2, i], 1))));
        assert!(
            UnderlayEndpoints::new(five)
                .unwrap_err()
                .0
                .contains("1 to 4")
        );
    }

    #[test]
    fn lays_out_over_local_underlays_by_name() {
        let a: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        let c: SocketAddr = "203.0.113.1:4789".parse().unwrap();
        let peer = UnderlayEndpoints::new([(n("a"), a), (n("c"), c)]).unwrap();
        let local = PerUnderlay::from_fn(2, |u| [n("a"), n("b")][u.index()]);
        let on = peer.on(&local);
        assert_eq!(on.values().copied().collect::<Vec<_>>(), [Some(a), None]);
    }

    #[test]
    fn round_trips_as_a_map() {
        let json = r#"{"a":"192.0.2.1:4789","lan2":"[2001:db8::1]:4789"}"#;
        let e: UnderlayEndpoints = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
        assert!(serde_json::from_str::<UnderlayEndpoints>("{}").is_err());
        assert!(serde_json::from_str::<UnderlayEndpoints>(r#"{"A":"192.0.2.1:1"}"#).is_err());
    }
}
