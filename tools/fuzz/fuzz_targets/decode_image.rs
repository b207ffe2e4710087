//! Any bytes as an encoded picture: `Image::decode` fails with an error or gives a picture whose
//! size is what it says and within the pixel limit, and that converts back to 8 bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunable::Image;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = Image::decode(data) {
        let (w, h, c) = (image.width(), image.height(), image.channels());
        assert!(w > 0 && h > 0 && (c == 1 || c == 3));
        assert_eq!(image.planes().len(), w * h * c);
        let alpha = usize::from(image.has_alpha());
        assert_eq!(image.to_interleaved_u8().len(), w * h * (c + alpha));
    }
});
