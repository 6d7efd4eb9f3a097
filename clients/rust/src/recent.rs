//! The ids of the last `message` frames, so one delivered twice (a retried
//! post) reaches the app once.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `size` ids.
#[derive(Debug)]
pub struct RecentIds {
    size: usize,
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl RecentIds {
    pub fn new(size: usize) -> Self {
        RecentIds {
            size: size.max(1),
            order: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// True when `id` was seen within the window; remembers it otherwise.
    pub fn seen(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return true;
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        if self.order.len() > self.size
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_seen_twice_only_within_the_window() {
        let mut recent = RecentIds::new(2);
        assert!(!recent.seen("a"));
        assert!(recent.seen("a"));
        assert!(!recent.seen("b"));
        assert!(!recent.seen("c"));
        // "a" has left the window of two.
        assert!(!recent.seen("a"));
        assert!(recent.seen("c"));
    }
}
