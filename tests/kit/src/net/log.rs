//! The request log the fakes keep for tests to assert on (each fake logs
//! its own `LoggedRequest`), positions in it ([`Mark`]), and polling until
//! something shows up ([`wait_until`]).

use std::thread;
use std::time::{Duration, Instant};

/// A position in a fake's request log, from its `mark()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(usize);

impl Mark {
    /// How many entries the log held at this position: requests at lower
    /// indices came before it.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Log entries in arrival order.
pub(crate) struct Log<T>(Vec<T>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Vec::new())
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&mut self, entry: T) {
        self.0.push(entry);
    }

    /// Appends `entry` and returns its position, for [`Log::update`].
    pub fn open(&mut self, entry: T) -> Mark {
        self.0.push(entry);
        Mark(self.0.len() - 1)
    }

    /// Changes the entry at `at` (one returned by [`Log::open`]).
    pub fn update(&mut self, at: Mark, f: impl FnOnce(&mut T)) {
        if let Some(entry) = self.0.get_mut(at.0) {
            f(entry);
        }
    }

    /// Every entry so far.
    pub fn all(&self) -> Vec<T> {
        self.0.clone()
    }

    /// The current end of the log.
    pub fn mark(&self) -> Mark {
        Mark(self.0.len())
    }

    /// The entries after `mark`.
    pub fn since(&self, mark: Mark) -> Vec<T> {
        self.0.get(mark.0..).unwrap_or_default().to_vec()
    }
}

/// Polls `cond` every 5 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
