//! AV1: the start of the `av1C` record (AV1 ISOBMFF binding, 2.3), which names the sequence's
//! profile and level.

/// The profile and level an `av1C` record states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1Config {
    /// `seq_profile`: 0 Main, 1 High, 2 Professional.
    pub seq_profile: u8,
    /// `seq_level_idx_0`; 31 means "no level limit".
    pub seq_level_idx: u8,
}

impl Av1Config {
    /// `None` unless the record starts with its marker and version 1: a description is optional
    /// data.
    pub fn parse(record: &[u8]) -> Option<Self> {
        // marker (1 bit) + version (7 bits), then seq_profile (3 bits) and seq_level_idx_0 (5).
        match record {
            [0x81, profile_and_level, ..] => {
                Some(Av1Config { seq_profile: profile_and_level >> 5, seq_level_idx: profile_and_level & 0x1f })
            }
            _ => None,
        }
    }

    pub fn profile_name(&self) -> &'static str {
        match self.seq_profile {
            0 => "Main",
            1 => "High",
            2 => "Professional",
            _ => "unknown",
        }
    }

    /// The level as AV1 annex A.3 writes it ("4.0"): `seq_level_idx` = (major - 2) * 4 + minor.
    /// `None` for "no limit" and the reserved indices.
    pub fn level(&self) -> Option<String> {
        (self.seq_level_idx < 24).then(|| format!("{}.{}", 2 + self.seq_level_idx / 4, self.seq_level_idx % 4))
    }
}
