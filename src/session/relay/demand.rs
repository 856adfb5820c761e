//! On demand: one mechanism for everything that feeds a stream only while it has viewers,
//! relays' pulls (an app's `origins`, a stream's `rtmp://` source, an origin an `on_play`
//! reply named) and cameras (`[sources]` with `rtsp://`, `rtsp_pull.rs`).
//!
//! - **Wake.** A play that finds nobody publishing its stream wakes what feeds it: its count
//!   in the hub is the first viewer an on-demand camera's task awaits (`Watch::demand`), and
//!   a pull is started by the play itself (one per stream, server-wide:
//!   `Relays::await_pull`).
//! - **Wait.** The player then awaits the hub's publish watch ([`crate::hub::Watch`]) for at
//!   most its feeder's start wait: a camera's `start_timeout`, or [`super::SOURCE_WAIT`] for a
//!   pull (less when a round of its origins failed first). No waiter polls the registry.
//! - **Linger.** A feeder ends `linger` after its stream's last viewer left
//!   (`Watch::idle_for`): woken by the hub when the viewers come and go, no timer runs while
//!   they watch.
//! - **Backoff.** A feeder that fails tries again after [`super::backoff`]'s wait, cut short
//!   when its last viewer leaves.

use std::rc::Rc;

use crate::config::RelayUrl;
use crate::session::ShardContext;

/// A play of `key` found nobody publishing it: wakes what feeds it, if anything does, and
/// waits for the stream to be published, at most that feeder's start wait. Whether it is
/// published now. `named`: the origin the player's `on_play` reply named (a pull only: a
/// stream a camera feeds is fed by its camera).
pub async fn await_source(context: &Rc<ShardContext>, key: &str, named: Option<&RelayUrl>) -> bool {
    if let Some(start_timeout) = context.sources.get().and_then(|sources| sources.start_timeout(key)) {
        // An on-demand camera's task was woken by this player's count in the hub; an
        // always-on one is connecting or retrying on its own.
        let watch = context.hub.watch(key);
        return tokio::time::timeout(start_timeout, watch.published()).await.is_ok();
    }
    match context.relays.get() {
        Some(relays) => relays.await_pull(context, key, named).await,
        None => false,
    }
}
