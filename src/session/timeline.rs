//! A player's own timeline: every protocol sends a player timestamps that start at zero
//! when it joins and keep going forward when a publisher restarts from zero.

/// Maps a publisher's timestamps to the player's own timeline.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The publisher timestamp that maps to `offset`; set by the first audio/video frame.
    base: Option<u32>,
    offset: u32,
    last: u32,
}

impl Timeline {
    pub fn map(&mut self, timestamp: u32, sets_base: bool) -> u32 {
        let out = match self.base {
            Some(base) => self.offset.wrapping_add(timestamp.saturating_sub(base)),
            None if sets_base => {
                self.base = Some(timestamp);
                self.offset
            }
            None => self.offset,
        };
        self.last = self.last.max(out);
        out
    }

    /// A new publisher: continue just after the last timestamp sent. A player that was sent
    /// nothing yet starts at zero: players read a first metadata tag at a non-zero time as an
    /// extra data stream.
    pub fn restart(&mut self) {
        if self.base.is_some() {
            self.offset = self.last.saturating_add(1);
        }
        self.base = None;
    }
}

/// Whether a packet sets a player's timeline: its first audio or video frame does, not a
/// sequence header or metadata, which come first at any timestamp.
pub fn sets_base(packet: &crate::hub::Packet) -> bool {
    use crate::hub::PacketKind;
    matches!(packet.kind, PacketKind::Audio | PacketKind::Video) && !packet.sequence_header
}
