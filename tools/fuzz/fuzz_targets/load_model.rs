//! Any bytes as a model file: loading either fails with an error or gives a model that runs a
//! small awkward picture at a level valid for it (the middle of every axis; none for a
//! level-less model) and returns an error or finite values. A panic or abort is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunable::{Engine, Image, Level, Lowering};

fuzz_target!(|data: &[u8]| {
    // Both CPU executors: the reference is the oracle, the fast one is what users run.
    for engine in [Engine::cpu(), Engine::reference()] {
        for lowering in [Lowering::Fused, Lowering::Unfused] {
            let Ok(model) = engine.load_bytes(data, lowering) else {
                continue;
            };
            let middles: Vec<f32> = model
                .axes()
                .iter()
                .map(|a| 0.5 * (a.min + a.max))
                .collect();
            let channels = model.spec().in_channels;
            // 9x7: odd sizes exercise the padding to the model's size multiple.
            let (w, h) = (9, 7);
            let planes = (0..w * h * channels)
                .map(|i| ((i * 37) % 256) as f32)
                .collect();
            let Ok(image) = Image::from_planes(w, h, channels, planes) else {
                continue;
            };
            if let Ok(out) = model.run(&image, Level::axes(&middles)) {
                assert!(
                    out.planes().iter().all(|v| v.is_finite()),
                    "Ok with a non-finite output"
                );
                assert_eq!((out.width(), out.height()), (w, h));
            }
        }
    }
});
