// Package imaging decodes untrusted uploaded or camera images (JPEG, PNG,
// WebP) into RGBA with limits checked before any pixel is decoded, and
// encodes JPEG thumbnails.
//
// The format is sniffed from the content, never from a file name. JPEG goes
// through libjpeg-turbo (about five times faster than image/jpeg, and it can
// decode at 1/2, 1/4 or 1/8 scale, which is all a 320x240 face detector
// needs); EXIF orientation is applied so that faces are upright. Every
// failure is an error wrapping one of the Err* values below, never a panic.
package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/webp"
)

// Errors returned (wrapped, with the numbers that explain them) by this
// package; test for them with errors.Is.
var (
	// ErrEmpty: the input has no bytes.
	ErrEmpty = errors.New("empty image")
	// ErrTooLarge: the input has more bytes than Limits.MaxBytes.
	ErrTooLarge = errors.New("image file too large")
	// ErrTooManyPixels: the header announces more pixels than
	// Limits.MaxPixels (a decompression bomb or simply too big a photo).
	ErrTooManyPixels = errors.New("image has too many pixels")
	// ErrUnsupportedFormat: the content is not JPEG, PNG or WebP.
	ErrUnsupportedFormat = errors.New("unsupported image format")
	// ErrCorrupt: the content claims a supported format but is truncated or
	// malformed.
	ErrCorrupt = errors.New("corrupt image")
	// ErrTooManyScans: a JPEG has more scans (SOS markers) than
	// Limits.MaxScans; each scan of a progressive JPEG is a pass over the
	// whole image, a CPU bomb in a small file.
	ErrTooManyScans = errors.New("jpeg has too many scans")
)

// Default limits: DefaultMaxBytes matches the upload limit of the API (10 MB
// per image); DefaultMaxPixels (40 MP, 160 MB once decoded to RGBA) is above
// any phone camera yet stops decompression bombs. DefaultMaxScans is far
// above the 10 or so scans of a progressive JPEG from an encoder, and below
// libjpeg-turbo's own 500.
const (
	DefaultMaxBytes  = 10 << 20
	DefaultMaxPixels = 40_000_000
	DefaultMaxScans  = 100
)

// Limits bound the work and memory one decode may use. A zero field means
// the default; there is deliberately no "unlimited".
type Limits struct {
	MaxBytes  int64 // size of the encoded input
	MaxPixels int64 // width*height announced by the header (WebP: of the frame and of the canvas)
	MaxScans  int   // SOS markers of a JPEG
}

// DefaultLimits returns the limits used when a field of Limits is zero.
func DefaultLimits() Limits {
	return Limits{MaxBytes: DefaultMaxBytes, MaxPixels: DefaultMaxPixels, MaxScans: DefaultMaxScans}
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxScans <= 0 {
		l.MaxScans = DefaultMaxScans
	}
	return l
}

// Format is an image container format recognised by its magic bytes.
type Format string

// The supported formats.
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	WebP Format = "webp"
)

// Sniff returns the format of data from its first bytes.
func Sniff(data []byte) (Format, error) {
	switch {
	case len(data) == 0:
		return "", ErrEmpty
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return JPEG, nil
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, nil
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return WebP, nil
	}
	n := min(len(data), 8)
	return "", fmt.Errorf("%w: first bytes % x are not JPEG, PNG or WebP", ErrUnsupportedFormat, data[:n])
}

// Info describes an image from its header alone.
type Info struct {
	Format Format
	// Width and Height as displayed, that is after EXIF orientation.
	Width, Height int
	// Orientation is the EXIF orientation (1..8) of a JPEG; 1 otherwise.
	Orientation int
}

// DecodeConfig checks data against lim and reads its header, without
// decoding pixels.
func DecodeConfig(data []byte, lim Limits) (Info, error) {
	h, err := readHeader(data, lim.withDefaults())
	if err != nil {
		return Info{}, err
	}
	w, ht := h.width, h.height
	if swapsAxes(h.orientation) {
		w, ht = ht, w
	}
	return Info{Format: h.format, Width: w, Height: ht, Orientation: h.orientation}, nil
}

// header is what readHeader learned: enough to decide how to decode.
type header struct {
	format        Format
	width, height int // as stored, before orientation
	orientation   int
	turbo         bool // JPEG that libjpeg-turbo can decode to RGBA
}

// readHeader enforces the limits in order of cost: bytes, format, pixels.
func readHeader(data []byte, lim Limits) (header, error) {
	if len(data) == 0 {
		return header{}, ErrEmpty
	}
	if int64(len(data)) > lim.MaxBytes {
		return header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxBytes)
	}
	f, err := Sniff(data)
	if err != nil {
		return header{}, err
	}
	h := header{format: f, orientation: 1}
	switch f {
	case JPEG:
		// Walked before libjpeg sees it: a file without a frame header is
		// refused with a reason, and the scan count bounds the CPU of
		// both decoders (Go's, for CMYK, has no limit of its own).
		js := walkJPEG(data, lim.MaxScans)
		if js.scans > lim.MaxScans {
			return header{}, fmt.Errorf("%w: more than %d scans (SOS markers), limit %d", ErrTooManyScans, lim.MaxScans, lim.MaxScans)
		}
		if !js.frame {
			return header{}, fmt.Errorf("%w: jpeg of %d bytes has no frame header (SOF marker)", ErrCorrupt, len(data))
		}
		var cmyk bool
		h.width, h.height, cmyk, err = turboHeader(data)
		if err != nil {
			return header{}, err
		}
		h.turbo = !cmyk
		h.orientation = jpegOrientation(data)
	default:
		var cfg image.Config
		cfg, err = goDecodeConfig(f, data)
		if err != nil {
			return header{}, err
		}
		h.width, h.height = cfg.Width, cfg.Height
		if f == WebP {
			// The decoder allocates for the frame, whatever the canvas.
			fw, fh, err := webpFrame(data)
			if err != nil {
				return header{}, err
			}
			if px := int64(fw) * int64(fh); px > lim.MaxPixels {
				return header{}, fmt.Errorf("%w: webp frame %dx%d = %d pixels (canvas %dx%d), limit %d", ErrTooManyPixels, fw, fh, px, h.width, h.height, lim.MaxPixels)
			}
			if fw != h.width || fh != h.height {
				return header{}, fmt.Errorf("%w: webp canvas %dx%d but frame %dx%d", ErrCorrupt, h.width, h.height, fw, fh)
			}
		}
	}
	if h.width <= 0 || h.height <= 0 {
		return header{}, fmt.Errorf("%w: %s header gives %dx%d pixels", ErrCorrupt, f, h.width, h.height)
	}
	if px := int64(h.width) * int64(h.height); px > lim.MaxPixels {
		return header{}, fmt.Errorf("%w: %dx%d = %d pixels, limit %d", ErrTooManyPixels, h.width, h.height, px, lim.MaxPixels)
	}
	return h, nil
}

// Decode decodes data at full resolution, upright.
func Decode(data []byte, lim Limits) (*image.RGBA, error) {
	img, _, err := DecodeForSize(data, lim, 0, 0)
	return img, err
}

// DecodeForSize decodes data at the smallest scale (1/8, 1/4, 1/2 or 1) whose
// upright size is still at least minW x minH, and returns the image with
// that scale: a point (x, y) of the result is (x/scale, y/scale) in the
// full-resolution image. Only JPEG can be decoded at a reduced scale; other
// formats come back at full resolution with scale 1. minW and minH both 0
// (or less) ask for full resolution.
func DecodeForSize(data []byte, lim Limits, minW, minH int) (img *image.RGBA, scale float64, err error) {
	h, err := readHeader(data, lim.withDefaults())
	if err != nil {
		return nil, 0, err
	}
	if !h.turbo {
		img, err = goDecode(h.format, data)
		if err != nil {
			return nil, 0, err
		}
		return orient(img, h.orientation), 1, nil
	}
	// The request is for the upright image; the decoder sees stored axes.
	if swapsAxes(h.orientation) {
		minW, minH = minH, minW
	}
	denom := 1
	for _, d := range []int{8, 4, 2} {
		if (minW > 0 || minH > 0) && scaled(h.width, d) >= minW && scaled(h.height, d) >= minH {
			denom = d
			break
		}
	}
	img, err = turboDecode(data, scaled(h.width, denom), scaled(h.height, denom))
	if err != nil {
		return nil, 0, err
	}
	return orient(img, h.orientation), 1 / float64(denom), nil
}

// scaled is libjpeg's TJSCALED for a 1/denom factor: it rounds up.
func scaled(n, denom int) int { return (n + denom - 1) / denom }

// goDecodeConfig reads the header of a PNG or WebP.
func goDecodeConfig(f Format, data []byte) (cfg image.Config, err error) {
	defer recoverCorrupt(f, &err)
	r := bytes.NewReader(data)
	switch f {
	case PNG:
		cfg, err = png.DecodeConfig(r)
	case WebP:
		cfg, err = webp.DecodeConfig(r)
	}
	if err != nil {
		return cfg, fmt.Errorf("%w: %s header: %v", ErrCorrupt, f, err)
	}
	return cfg, nil
}

// goDecode decodes with the standard library (PNG, WebP, and the CMYK JPEGs
// that libjpeg-turbo cannot convert to RGB). Only called after readHeader has
// bounded the pixel count, so the decoders cannot be made to allocate more.
func goDecode(f Format, data []byte) (img *image.RGBA, err error) {
	defer recoverCorrupt(f, &err)
	r := bytes.NewReader(data)
	var src image.Image
	switch f {
	case PNG:
		src, err = png.Decode(r)
	case WebP:
		src, err = webp.Decode(r)
	case JPEG:
		src, err = jpeg.Decode(r)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, f, err)
	}
	return toRGBA(src), nil
}

// recoverCorrupt turns a panic of a Go decoder into ErrCorrupt. The limits
// are checked before decoding and the standard decoders return errors on
// malformed input, so this is a last resort against a decoder bug, not a
// control path.
func recoverCorrupt(f Format, err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %s decoder panicked: %v", ErrCorrupt, f, p)
	}
}

// toRGBA returns src as an *image.RGBA with origin (0, 0), converting only
// when needed.
func toRGBA(src image.Image) *image.RGBA {
	if rgba, ok := src.(*image.RGBA); ok && rgba.Rect.Min == (image.Point{}) {
		return rgba
	}
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Rect, src, b.Min, draw.Src)
	return dst
}
