//! [`PerUnderlay`]: one value per underlay this agent runs.

use std::ops::{Index, IndexMut};

use crate::{MAX_UNDERLAYS, Underlay};

/// One value per underlay of this agent, indexed by [`Underlay`]: counters,
/// sockets, link health, a member's endpoints. Holds 1 to
/// [`MAX_UNDERLAYS`] values, in the agent's underlay order; built once per
/// configuration or view, so the data path only indexes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PerUnderlay<T>(Vec<T>);

impl<T> PerUnderlay<T> {
    /// `f(u)` for each of the first `count` underlays.
    ///
    /// # Panics
    /// If `count` exceeds [`MAX_UNDERLAYS`]: configurations are checked
    /// against it long before anything is built from them.
    pub fn from_fn(count: usize, f: impl FnMut(Underlay) -> T) -> Self {
        assert!(
            count <= MAX_UNDERLAYS,
            "{count} underlays: at most {MAX_UNDERLAYS}"
        );
        Self((0..count).filter_map(Underlay::at).map(f).collect())
    }

    /// Like [`PerUnderlay::from_fn`], stopping at the first error.
    pub fn try_from_fn<E>(
        count: usize,
        f: impl FnMut(Underlay) -> Result<T, E>,
    ) -> Result<Self, E> {
        assert!(
            count <= MAX_UNDERLAYS,
            "{count} underlays: at most {MAX_UNDERLAYS}"
        );
        (0..count)
            .filter_map(Underlay::at)
            .map(f)
            .collect::<Result<Vec<T>, E>>()
            .map(Self)
    }

    /// How many underlays.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (only a `Default` value is empty).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlays, in order.
    pub fn underlays(&self) -> impl Iterator<Item = Underlay> + use<T> {
        (0..self.0.len()).filter_map(Underlay::at)
    }

    /// Each underlay with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Underlay, &T)> {
        self.underlays().zip(self.0.iter())
    }

    /// The values, in underlay order.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The values, mutably, in underlay order.
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }

    /// The value on `u`, or `None` if this agent has no such underlay.
    pub fn get(&self, u: Underlay) -> Option<&T> {
        self.0.get(u.index())
    }

    /// A container of the same shape holding `f(u, value)`.
    pub fn map<U>(&self, mut f: impl FnMut(Underlay, &T) -> U) -> PerUnderlay<U> {
        PerUnderlay(self.iter().map(|(u, v)| f(u, v)).collect())
    }
}

/// Empty: a placeholder until the agent's underlays are known.
impl<T> Default for PerUnderlay<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Index<Underlay> for PerUnderlay<T> {
    type Output = T;
    fn index(&self, u: Underlay) -> &T {
        &self.0[u.index()]
    }
}

impl<T> IndexMut<Underlay> for PerUnderlay<T> {
    fn index_mut(&mut self, u: Underlay) -> &mut T {
        &mut self.0[u.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_by_position() {
        let mut p = PerUnderlay::from_fn(3, |u| u.index() * 10);
        assert_eq!(p.len(), 3);
        let two = Underlay::at(2).unwrap();
        assert_eq!(p[two], 20);
        p[two] += 1;
        assert_eq!(p.values().copied().collect::<Vec<_>>(), [0, 10, 21]);
        assert_eq!(p.get(Underlay::at(3).unwrap()), None);
        let doubled = p.map(|_, v| v * 2);
        assert_eq!(doubled.iter().last(), Some((two, &42)));
        assert_eq!(serde_json::to_string(&doubled).unwrap(), "[0,20,42]");
    }

    #[test]
    #[should_panic(expected = "at most 4")]
    fn refuses_more_than_the_maximum() {
        let _ = PerUnderlay::from_fn(MAX_UNDERLAYS + 1, |u| u);
    }
}
