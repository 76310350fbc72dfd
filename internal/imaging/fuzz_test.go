package imaging

import (
	"encoding/binary"
	"image"
	"testing"

	"poi/internal/testenv"
)

// FuzzDecode feeds arbitrary bytes to every entry point: each must return an
// image or an error, never panic or crash in C. CI runs it briefly:
//
//	go test -run '^$' -fuzz=FuzzDecode -fuzztime=10s ./internal/imaging/
func FuzzDecode(f *testing.F) {
	jpg := encodeJPEG(f, quadrants(32, 24))
	f.Add(jpg)
	f.Add(withOrientation(jpg, 6, binary.LittleEndian))
	f.Add(withOrientation(jpg, 3, binary.BigEndian))
	f.Add(jpg[:len(jpg)/2])
	f.Add(encodePNG(f, quadrants(16, 8)))
	f.Add(pngHeader(30000, 30000))
	f.Add(webpLossless)
	f.Add(webpLossy)
	f.Add(testenv.ReadPhoto(f, "bill-murray-snl_crop.jpg"))
	f.Add(progressiveCMYK(3))
	f.Add(riffWebP(vp8x(1, 1), append([]byte("VP8L\x2f"), 0xff, 0xff, 0xff, 0x0f, 0)))
	f.Add([]byte{0xFF, 0xD8, 0xFF, 0xD9})
	f.Add([]byte("hello"))
	f.Add([]byte{})

	// Small limits keep each execution cheap; the checks are the same.
	lim := Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, cfgErr := DecodeConfig(data, lim)
		img, err := Decode(data, lim)
		if err == nil {
			if cfgErr != nil {
				t.Fatalf("Decode succeeded where DecodeConfig failed: %v", cfgErr)
			}
			if img.Rect != image.Rect(0, 0, info.Width, info.Height) {
				t.Fatalf("decoded %v, header said %dx%d", img.Rect, info.Width, info.Height)
			}
		}
		small, scale, err := DecodeForSize(data, lim, 8, 8)
		if err == nil && (small.Rect.Empty() || scale <= 0 || scale > 1) {
			t.Fatalf("DecodeForSize: %v at scale %v", small.Rect, scale)
		}
	})
}
