//! The window H.264 (frame cropping) and H.265 (conformance window) cut from the coded picture
//! to give the displayed one.

use super::CodecError;
use super::bits::BitReader;

/// Offsets from each edge, in the units the codec's chroma format sets.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CropWindow {
    left: u64,
    right: u64,
    top: u64,
    bottom: u64,
}

impl CropWindow {
    /// Reads `frame_cropping_flag` / `conformance_window_flag` and, when set, the four offsets.
    pub(crate) fn read(bits: &mut BitReader<'_>) -> Result<Self, CodecError> {
        if !bits.flag()? {
            return Ok(CropWindow::default());
        }
        Ok(CropWindow {
            left: u64::from(bits.ue()?),
            right: u64::from(bits.ue()?),
            top: u64::from(bits.ue()?),
            bottom: u64::from(bits.ue()?),
        })
    }

    /// The displayed width, each offset counting `unit` samples; `None` when the crop exceeds
    /// the picture. The offsets are exp-Golomb codes, so any `u32` can arrive: the arithmetic
    /// is checked.
    pub(crate) fn width(&self, coded_width: u64, unit: u64) -> Option<u32> {
        cropped(coded_width, unit, self.left, self.right)
    }

    /// The displayed height, as [`CropWindow::width`].
    pub(crate) fn height(&self, coded_height: u64, unit: u64) -> Option<u32> {
        cropped(coded_height, unit, self.top, self.bottom)
    }
}

fn cropped(coded: u64, unit: u64, crop_start: u64, crop_end: u64) -> Option<u32> {
    let crop = unit.checked_mul(crop_start.checked_add(crop_end)?)?;
    u32::try_from(coded.checked_sub(crop)?).ok()
}
