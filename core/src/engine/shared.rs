//! Values handed out as shared `Arc`s, so that rows with equal label sets, inventories or
//! names hold one copy between them.

use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashSet;

/// Values handed out as shared `Arc`s: an equal value asked for again gets the same `Arc`.
/// Values no holder keeps any more are dropped when the set has doubled since the last sweep,
/// so the set stays within twice the number of distinct values in use (and at least 64).
#[derive(Debug)]
pub struct Shared<T: ?Sized> {
    set: FxHashSet<Arc<T>>,
    sweep_at: usize,
}

// Not derived: the derive would ask `T: Clone`, which `str` is not; the `Arc`s are cloned.
impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            set: self.set.clone(),
            sweep_at: self.sweep_at,
        }
    }
}

impl<T: ?Sized> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            set: FxHashSet::default(),
            sweep_at: 64,
        }
    }
}

impl<T: ?Sized + Hash + Eq> Shared<T> {
    /// The shared `Arc` of a value equal to `v` (`v` itself when it is the first).
    pub fn share(&mut self, v: Arc<T>) -> Arc<T> {
        if let Some(found) = self.set.get(&*v) {
            return Arc::clone(found);
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = (self.set.len() * 2).max(64);
        }
        self.set.insert(Arc::clone(&v));
        v
    }

    /// The shared `Arc` of a value equal to `v`, allocated only when it is the first.
    pub fn of(&mut self, v: &T) -> Arc<T>
    where
        for<'a> Arc<T>: From<&'a T>,
    {
        match self.set.get(v) {
            Some(found) => Arc::clone(found),
            None => self.share(Arc::from(v)),
        }
    }

    /// How many distinct values the set holds (some perhaps no longer used until a sweep).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl<T: Hash + Eq> Shared<T> {
    /// The shared `Arc` of a value equal to `v`, which is moved in when it is the first.
    pub fn value(&mut self, v: T) -> Arc<T> {
        match self.set.get(&v) {
            Some(found) => Arc::clone(found),
            None => self.share(Arc::new(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_get_one_arc_and_unused_ones_are_swept() {
        let mut names: Shared<str> = Shared::default();
        let a = names.of("agent-1.2.0");
        let b = names.of("agent-1.2.0");
        assert!(Arc::ptr_eq(&a, &b));
        // An equal value built elsewhere is swapped for the shared one.
        let c = names.share(Arc::from("agent-1.2.0"));
        assert!(Arc::ptr_eq(&a, &c));
        assert_eq!(names.len(), 1);

        // 100 values nobody keeps: the set sweeps them once it has doubled, keeping `a`.
        for i in 0..100 {
            names.of(&format!("v{i}"));
        }
        assert!(names.len() < 100, "swept: {}", names.len());
        assert!(Arc::ptr_eq(&a, &names.of("agent-1.2.0")));

        let mut lists: Shared<Vec<String>> = Shared::default();
        let x = lists.value(vec!["sw1".into()]);
        let y = lists.value(vec!["sw1".into()]);
        assert!(Arc::ptr_eq(&x, &y));
        assert!(!lists.is_empty());
    }
}
