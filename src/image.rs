//! Images in and out: 8- and 16-bit PNG, JPEG, TIFF; gray, RGB, with or without alpha; EXIF
//! orientation applied on open. Pixels are kept as planar f32 on the 0..255 scale (16-bit
//! input keeps its extra precision as fractions), alpha carried along untouched.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Images with more pixels than this are refused (about 1.5 GB of f32 RGB planes).
pub const MAX_PIXELS: u64 = 128_000_000;

/// `width * height * channels` for an image that is neither empty nor over [`MAX_PIXELS`];
/// checked first, so that a product that would wrap never reaches an allocation or an index.
fn checked_len(width: usize, height: usize, channels: usize) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::Image(format!(
            "image of size {width}x{height} is empty"
        )));
    }
    let pixels = (width as u64).checked_mul(height as u64);
    match pixels {
        Some(p) if p <= MAX_PIXELS => Ok(p as usize * channels),
        _ => Err(Error::Image(format!(
            "{width}x{height} is larger than the {MAX_PIXELS}-pixel limit"
        ))),
    }
}

/// The temporary file an atomic write of `path` goes through: `.NAME.tmp` in the same folder
/// (so the rename stays on one file system). The name is the same on every write, so what a
/// crash leaves behind is overwritten, then renamed away, by the next write of that path,
/// instead of one more `.NAME.tmp-PID` piling up. Two processes writing one path at the same
/// moment share it: give concurrent writers different outputs.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    dir.join(format!(".{name}.tmp"))
}

/// A JPEG codes at least one bit per 8x8 block of its full-resolution component (the DC
/// code; Huffman codes are never shorter), so it needs `pixels / 512` bytes of scan data; a
/// file under half that cannot hold the size its header declares. The decoder would fill the
/// missing rows in silently (and a 200-byte file declaring 11000x11000 would become 121
/// megapixels of work), so it is refused before decoding. PNG, TIFF and GIF decoders already
/// report truncation themselves.
const JPEG_MIN_BYTES_PER_PIXEL: f64 = 1.0 / 1024.0;

fn check_declared_size(
    format: Option<image::ImageFormat>,
    w: u32,
    h: u32,
    file_len: u64,
) -> std::result::Result<(), String> {
    if format != Some(image::ImageFormat::Jpeg) {
        return Ok(());
    }
    let need = (w as f64 * h as f64 * JPEG_MIN_BYTES_PER_PIXEL) as u64;
    if file_len < need {
        return Err(format!(
            "the JPEG declares {w}x{h} pixels but the file holds {file_len} bytes, fewer than the {need} such a size needs: it is truncated or corrupt"
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    width: usize,
    height: usize,
    /// 1 (gray) or 3 (RGB) color planes, each `width * height`, values on the 0..255 scale.
    planes: Vec<f32>,
    channels: usize,
    alpha: Option<Vec<f32>>,
    /// The source had 16 bits per sample; `save` writes 16 bits where the format allows.
    sixteen_bit: bool,
}

impl Image {
    /// An image from planar values on the 0..255 scale (`channels` 1 or 3).
    pub fn from_planes(
        width: usize,
        height: usize,
        channels: usize,
        planes: Vec<f32>,
    ) -> Result<Image> {
        if channels != 1 && channels != 3 {
            return Err(Error::Image(format!(
                "{channels} color channels; expected 1 (gray) or 3 (RGB)"
            )));
        }
        let len = checked_len(width, height, channels)?;
        if planes.len() != len {
            return Err(Error::Image(format!(
                "{} values for a {width}x{height} image with {channels} channels",
                planes.len()
            )));
        }
        Ok(Image {
            width,
            height,
            planes,
            channels,
            alpha: None,
            sixteen_bit: false,
        })
    }

    /// An 8-bit interleaved RGB or gray buffer (tests, embedding apps).
    pub fn from_interleaved_u8(
        width: usize,
        height: usize,
        channels: usize,
        data: &[u8],
    ) -> Result<Image> {
        if channels != 1 && channels != 3 {
            return Err(Error::Image(format!(
                "{channels} color channels; expected 1 (gray) or 3 (RGB)"
            )));
        }
        if data.len() != checked_len(width, height, channels)? {
            return Err(Error::Image(format!(
                "{} bytes for {width}x{height}x{channels}",
                data.len()
            )));
        }
        let mut planes = vec![0.0; data.len()];
        for (i, &v) in data.iter().enumerate() {
            let (p, c) = (i / channels, i % channels);
            planes[c * width * height + p] = v as f32;
        }
        Image::from_planes(width, height, channels, planes)
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// Color channels (1 or 3), alpha not counted.
    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn has_alpha(&self) -> bool {
        self.alpha.is_some()
    }
    pub fn is_sixteen_bit(&self) -> bool {
        self.sixteen_bit
    }
    pub fn planes(&self) -> &[f32] {
        &self.planes
    }
    pub fn alpha(&self) -> Option<&[f32]> {
        self.alpha.as_deref()
    }

    /// The same image with other color planes (same size and channel count), alpha kept.
    pub fn with_planes(&self, planes: Vec<f32>) -> Result<Image> {
        let mut out = Image::from_planes(self.width, self.height, self.channels, planes)?;
        out.alpha = self.alpha.clone();
        out.sixteen_bit = self.sixteen_bit;
        Ok(out)
    }

    /// Opens a PNG, JPEG, TIFF (or anything the `image` crate reads), applying EXIF orientation.
    pub fn open(path: impl AsRef<Path>) -> Result<Image> {
        let path = path.as_ref();
        let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        Self::decode_from(reader, file_len, &path.display().to_string(), |e| {
            Error::io(path, e)
        })
    }

    /// Decodes an encoded picture held in memory (PNG, JPEG, TIFF, ...), with the same limits
    /// and checks as `open`.
    pub fn decode(bytes: &[u8]) -> Result<Image> {
        let reader = ImageReader::new(std::io::Cursor::new(bytes));
        Self::decode_from(reader, bytes.len() as u64, "picture", |e| {
            Error::Image(format!("picture: {e}"))
        })
    }

    /// The decoding behind `open` and `decode`: the format guessed from the content, the
    /// declared size checked against the pixel limit and against what `len` bytes can hold
    /// before anything is allocated.
    fn decode_from<R: std::io::BufRead + std::io::Seek>(
        mut reader: ImageReader<R>,
        len: u64,
        name: &str,
        io_err: impl Fn(std::io::Error) -> Error,
    ) -> Result<Image> {
        let err = |m: String| Error::Image(format!("{name}: {m}"));
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_PIXELS * 8);
        reader.limits(limits);
        let reader = reader.with_guessed_format().map_err(io_err)?;
        let format = reader.format();
        let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
        let (w, h) = decoder.dimensions();
        if w as u64 * h as u64 > MAX_PIXELS {
            return Err(err(format!(
                "{w}x{h} is larger than the {MAX_PIXELS}-pixel limit"
            )));
        }
        check_declared_size(format, w, h, len).map_err(err)?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?;
        img.apply_orientation(orientation);
        Self::from_dynamic(img).map_err(|e| match e {
            Error::Image(m) => err(m),
            other => other,
        })
    }

    pub fn from_dynamic(img: DynamicImage) -> Result<Image> {
        use image::ColorType as C;
        let color = img.color();
        let sixteen_bit = matches!(
            color,
            C::L16 | C::La16 | C::Rgb16 | C::Rgba16 | C::Rgb32F | C::Rgba32F
        );
        let gray = matches!(color, C::L8 | C::L16 | C::La8 | C::La16);
        let has_alpha = color.has_alpha();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let channels = if gray { 1 } else { 3 };
        // Everything goes through 16-bit RGBA/LA so one path serves 8 and 16 bits.
        let scale = 255.0 / 65535.0;
        let mut planes = vec![0.0f32; checked_len(w, h, channels)?];
        let mut alpha = has_alpha.then(|| vec![0.0f32; w * h]);
        if gray {
            let buf = img.into_luma_alpha16();
            for (i, px) in buf.pixels().enumerate() {
                planes[i] = px[0] as f32 * scale;
                if let Some(a) = alpha.as_mut() {
                    a[i] = px[1] as f32 * scale;
                }
            }
        } else {
            let buf = img.into_rgba16();
            for (i, px) in buf.pixels().enumerate() {
                for c in 0..3 {
                    planes[c * w * h + i] = px[c] as f32 * scale;
                }
                if let Some(a) = alpha.as_mut() {
                    a[i] = px[3] as f32 * scale;
                }
            }
        }
        let mut out = Image::from_planes(w, h, channels, planes)?;
        out.alpha = alpha;
        out.sixteen_bit = sixteen_bit;
        Ok(out)
    }

    /// Values rounded and clipped to 8 bits, interleaved (with alpha if present).
    pub fn to_interleaved_u8(&self) -> Vec<u8> {
        self.interleave(|v| v.clamp(0.0, 255.0).round() as u8)
    }

    fn interleave<T: Copy + Default>(&self, conv: impl Fn(f32) -> T) -> Vec<T> {
        let n = self.width * self.height;
        let total = self.channels + self.alpha.is_some() as usize;
        let mut out = vec![T::default(); n * total];
        for i in 0..n {
            for c in 0..self.channels {
                out[i * total + c] = conv(self.planes[c * n + i]);
            }
            if let Some(a) = &self.alpha {
                out[i * total + self.channels] = conv(a[i]);
            }
        }
        out
    }

    pub fn to_dynamic(&self) -> DynamicImage {
        let (w, h) = (self.width as u32, self.height as u32);
        let has_alpha = self.alpha.is_some();
        if self.sixteen_bit {
            let data =
                self.interleave(|v| (v * (65535.0 / 255.0)).clamp(0.0, 65535.0).round() as u16);
            match (self.channels, has_alpha) {
                (1, false) => DynamicImage::ImageLuma16(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (1, true) => DynamicImage::ImageLumaA16(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (_, false) => DynamicImage::ImageRgb16(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (_, true) => DynamicImage::ImageRgba16(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
            }
        } else {
            let data = self.to_interleaved_u8();
            match (self.channels, has_alpha) {
                (1, false) => DynamicImage::ImageLuma8(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (1, true) => DynamicImage::ImageLumaA8(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (_, false) => DynamicImage::ImageRgb8(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
                (_, true) => DynamicImage::ImageRgba8(
                    image::ImageBuffer::from_raw(w, h, data).expect("sized"),
                ),
            }
        }
    }

    /// Saves by extension (png, jpg/jpeg, tif/tiff). Writes a temporary file beside the target
    /// ([`temp_path_for`]) and renames it, so a failure never leaves a partial file and a crash
    /// leaves at most one temporary file, which the next save of that path replaces. JPEG is
    /// written as 8-bit without alpha.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let format = image::ImageFormat::from_extension(&ext)
            .filter(|f| {
                matches!(
                    f,
                    image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::Tiff
                )
            })
            .ok_or_else(|| {
                Error::Image(format!(
                    "{}: unsupported output format (use .png, .jpg or .tif)",
                    path.display()
                ))
            })?;
        let mut img = self.to_dynamic();
        if format == image::ImageFormat::Jpeg {
            img = if self.channels == 1 {
                DynamicImage::ImageLuma8(img.into_luma8())
            } else {
                DynamicImage::ImageRgb8(img.into_rgb8())
            };
        }
        let tmp = temp_path_for(path);
        let result = img.save_with_format(&tmp, format);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Image(format!(
                "{}: cannot write: {e}",
                path.display()
            )));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(path, e)
        })
    }

    /// The color planes as a CHW tensor divided by `value_scale`.
    pub fn to_tensor(&self, value_scale: f32) -> Tensor {
        let data = self.planes.iter().map(|v| v / value_scale).collect();
        Tensor::from_vec(Shape::new(self.channels, self.height, self.width), data)
    }
}
