//! VP9: the start of the `vpcC` record (VP codec ISOBMFF binding), which names the profile and
//! level.

/// The profile and level a `vpcC` record states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Config {
    pub profile: u8,
    /// Ten times the level: 31 is level 3.1.
    pub level: u8,
}

impl Vp9Config {
    /// `None` unless the record is version 1: a description is optional data.
    pub fn parse(record: &[u8]) -> Option<Self> {
        // A full box: version and flags (4 bytes), then profile and level.
        match record {
            [1, _, _, _, profile, level, ..] => Some(Vp9Config { profile: *profile, level: *level }),
            _ => None,
        }
    }

    pub fn profile_name(&self) -> &'static str {
        match self.profile {
            0 => "Profile 0",
            1 => "Profile 1",
            2 => "Profile 2",
            3 => "Profile 3",
            _ => "unknown",
        }
    }

    /// The level as the VP9 spec writes it: "3.1", "1.0".
    pub fn level(&self) -> String {
        format!("{}.{}", self.level / 10, self.level % 10)
    }
}
