//! The one backoff of everything that feeds or forwards a stream from elsewhere: relays'
//! pulls and pushes, and camera sources (`rtsp_pull.rs`). A try that fails waits [`FIRST`],
//! doubled after each failure in a row up to [`LONGEST`]; a try that had streamed first
//! starts the count over. The wait ends early when the shard shuts down, or, for an on-demand
//! feeder, when its stream's last viewer left ([`retry_after`]).

use std::time::Duration;

use crate::hub::Watch;
use crate::session::Shutdown;

/// The wait after the first failure.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest wait: a peer back after a power cut is found within it.
pub const LONGEST: Duration = Duration::from_secs(30);

/// The wait before the next try.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// A try (or a round of them) failed; `streamed` if it had streamed first. How long to
    /// wait before the next.
    pub fn failed(&mut self, streamed: bool) -> Duration {
        if streamed {
            self.next = FIRST;
        }
        let wait = self.next;
        self.next = (wait * 2).min(LONGEST);
        wait
    }

    /// The feeder went idle (nobody wanted its stream): its next start is a first try.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// How a wait between tries ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The wait is over: try again.
    Now,
    /// The stream's last viewer left first: an on-demand feeder stops.
    Unwanted,
    /// The shard shuts down.
    Shutdown,
}

/// Sleeps `wait`; less if the shard shuts down, or, with `demand` (an on-demand feeder's
/// watch of its stream), if the stream has no viewer any more.
pub(crate) async fn retry_after(shutdown: &Shutdown, wait: Duration, demand: Option<&Watch>) -> Retry {
    let unwanted = async {
        match demand {
            Some(watch) => watch.demand(false).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => Retry::Now,
        _ = shutdown.wait() => Retry::Shutdown,
        _ = unwanted => Retry::Unwanted,
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::hub::{Hub, HubSettings, ShardHub};

    #[test]
    fn waits_double_up_to_the_longest_and_start_over_after_a_stream_or_idle() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| backoff.failed(false).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        // A try that streamed before it failed: the next failure is a first one.
        assert_eq!(backoff.failed(true), FIRST);
        assert_eq!(backoff.failed(false), Duration::from_secs(2));
        backoff.reset();
        assert_eq!(backoff.failed(false), FIRST);
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    #[test]
    fn a_wait_ends_when_the_last_viewer_leaves_or_the_shard_shuts_down() {
        let (hub, _receivers) = Hub::new(1, HubSettings::default());
        let shard: Rc<ShardHub> = ShardHub::new(0, hub);
        let shutdown = Shutdown::default();
        // Nobody waits 30 s here: the test ends when the wait is cut short, or fails after.
        let long = LONGEST;
        let watch = shard.watch("live/cam");
        let (viewer, _) = shard.play("live/cam", 1);
        let retry = block_on(async {
            let leave = async {
                tokio::task::yield_now().await;
                drop(viewer);
                std::future::pending::<()>().await
            };
            tokio::select! {
                retry = retry_after(&shutdown, long, Some(&watch)) => retry,
                _ = leave => unreachable!(),
            }
        });
        assert_eq!(retry, Retry::Unwanted);
        // Without demand (always on, or a push), viewers do not matter; shutdown does.
        let retry = block_on(async {
            let stop = async {
                tokio::task::yield_now().await;
                shutdown.trigger();
                std::future::pending::<()>().await
            };
            tokio::select! {
                retry = retry_after(&shutdown, long, None) => retry,
                _ = stop => unreachable!(),
            }
        });
        assert_eq!(retry, Retry::Shutdown);
        let idle = block_on(retry_after(&Shutdown::default(), long, Some(&watch)));
        assert_eq!(idle, Retry::Unwanted, "no viewer at all: at once");
    }
}
