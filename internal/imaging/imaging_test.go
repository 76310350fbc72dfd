package imaging

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"poi/internal/testenv"
)

// Tiny WebP files (1x1, lossless and lossy), the well-known probes browsers
// use to test WebP support: there is no WebP encoder in Go to make them.
var (
	webpLossless = mustB64("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
	webpLossy    = mustB64("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA")
)

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// quadrants is a w x h image whose quarters are red (top left), green (top
// right), blue (bottom left) and white (bottom right), so that any flip or
// rotation is visible.
func quadrants(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var c color.RGBA
			switch {
			case x < w/2 && y < h/2:
				c = color.RGBA{255, 0, 0, 255}
			case y < h/2:
				c = color.RGBA{0, 255, 0, 255}
			case x < w/2:
				c = color.RGBA{0, 0, 255, 255}
			default:
				c = color.RGBA{255, 255, 255, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withOrientation inserts an APP1 EXIF segment holding only the orientation
// tag right after the SOI marker, as a camera would write it.
func withOrientation(jpg []byte, orientation uint16, bo binary.ByteOrder) []byte {
	var tiff bytes.Buffer
	if bo == binary.LittleEndian {
		tiff.WriteString("II")
	} else {
		tiff.WriteString("MM")
	}
	w := func(v any) { _ = binary.Write(&tiff, bo, v) }
	w(uint16(42))
	w(uint32(8))      // IFD0 offset
	w(uint16(2))      // entries
	w(uint16(0x010F)) // Make, to check that other tags are skipped
	w(uint16(2))
	w(uint32(4))
	tiff.WriteString("Cam\x00")
	w(uint16(0x0112)) // Orientation, SHORT, 1 value
	w(uint16(3))
	w(uint32(1))
	w(orientation)
	w(uint16(0))
	w(uint32(0)) // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// pngHeader is a PNG signature and a valid IHDR chunk for a w x h RGB image,
// with no pixel data at all.
func pngHeader(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8 bit, truecolour
	chunk := binary.BigEndian.AppendUint32(nil, 13)
	chunk = append(chunk, "IHDR"...)
	chunk = append(chunk, ihdr...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append([]byte("\x89PNG\r\n\x1a\n"), chunk...)
}

func TestDecodeRejects(t *testing.T) {
	photo := testenv.ReadPhoto(t, "franck_01829.jpg")
	big := make([]byte, 12<<20)
	copy(big, photo)
	tests := []struct {
		name string
		data []byte
		want error
		msg  string // part of the message that names the problem
		// The header is valid: only decoding the pixels finds the fault.
		pixels bool
	}{
		{"zero bytes", nil, ErrEmpty, "empty", false},
		{"text", []byte("name,score\nalice,1\n"), ErrUnsupportedFormat, "6e 61 6d 65", false},
		{"gif", []byte("GIF89a\x01\x00\x01\x00"), ErrUnsupportedFormat, "not JPEG, PNG or WebP", false},
		{"truncated jpeg", photo[:len(photo)/2], ErrCorrupt, "Premature end", true},
		{"jpeg magic only", []byte{0xFF, 0xD8, 0xFF}, ErrCorrupt, "jpeg", false},
		{"png 30000x30000 header", pngHeader(30000, 30000), ErrTooManyPixels, "30000x30000 = 900000000 pixels, limit 40000000", false},
		{"png header without pixels", pngHeader(64, 64), ErrCorrupt, "png", true},
		{"truncated png", encodePNG(t, quadrants(64, 64))[:100], ErrCorrupt, "png", true},
		{"12 MB", big, ErrTooLarge, "12582912 bytes, limit 10485760", false},
		{"corrupt webp", []byte("RIFF\x20\x00\x00\x00WEBPVP8 garbage"), ErrCorrupt, "webp", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			decoders := []func([]byte) error{
				func(b []byte) error { _, err := Decode(b, Limits{}); return err },
				func(b []byte) error { _, _, err := DecodeForSize(b, Limits{}, 320, 240); return err },
			}
			if !tc.pixels {
				decoders = append(decoders, func(b []byte) error { _, err := DecodeConfig(b, Limits{}); return err })
			}
			for _, decode := range decoders {
				err := decode(tc.data)
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("message %q does not contain %q", err, tc.msg)
				}
			}
		})
	}
}

func TestDecodeCustomLimits(t *testing.T) {
	photo := testenv.ReadPhoto(t, "franck_01829.jpg") // 720x576
	if _, err := Decode(photo, Limits{MaxBytes: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("MaxBytes 1000: got %v", err)
	}
	if _, err := Decode(photo, Limits{MaxPixels: 720*576 - 1}); !errors.Is(err, ErrTooManyPixels) {
		t.Fatalf("MaxPixels: got %v", err)
	}
	if _, err := Decode(photo, Limits{MaxPixels: 720 * 576}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

func TestDecodeFormats(t *testing.T) {
	src := quadrants(64, 48)
	tests := []struct {
		name  string
		data  []byte
		f     Format
		w, h  int
		exact bool
	}{
		{"png", encodePNG(t, src), PNG, 64, 48, true},
		{"jpeg", encodeJPEG(t, src), JPEG, 64, 48, false},
		{"webp lossless", webpLossless, WebP, 1, 1, false},
		{"webp lossy", webpLossy, WebP, 1, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := DecodeConfig(tc.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != tc.f || info.Width != tc.w || info.Height != tc.h {
				t.Fatalf("config %+v", info)
			}
			img, err := Decode(tc.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if img.Rect != image.Rect(0, 0, tc.w, tc.h) {
				t.Fatalf("bounds %v", img.Rect)
			}
			if tc.exact && !bytes.Equal(img.Pix, src.Pix) {
				t.Fatal("PNG pixels differ from the encoded image")
			}
			if tc.w == 64 {
				checkCorners(t, img, [4]color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}})
			}
		})
	}
}

// checkCorners compares the colour at the centre of each quadrant (top left,
// top right, bottom left, bottom right) with want, allowing JPEG noise.
func checkCorners(t *testing.T, img *image.RGBA, want [4]color.RGBA) {
	t.Helper()
	w, h := img.Rect.Dx(), img.Rect.Dy()
	pts := [4]image.Point{{w / 4, h / 4}, {3 * w / 4, h / 4}, {w / 4, 3 * h / 4}, {3 * w / 4, 3 * h / 4}}
	for i, p := range pts {
		got := img.RGBAAt(p.X, p.Y)
		d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
		if d(got.R, want[i].R) > 40 || d(got.G, want[i].G) > 40 || d(got.B, want[i].B) > 40 {
			t.Fatalf("quadrant %d at %v: got %v, want %v", i, p, got, want[i])
		}
	}
}

func TestEXIFOrientation(t *testing.T) {
	red, green, blue, white := color.RGBA{255, 0, 0, 255}, color.RGBA{0, 255, 0, 255}, color.RGBA{0, 0, 255, 255}, color.RGBA{255, 255, 255, 255}
	// Where the stored quadrants must be displayed, from the EXIF definition
	// of each orientation (which side the stored row 0 and column 0 are on).
	// Listed as the displayed top left, top right, bottom left, bottom right.
	want := map[uint16][4]color.RGBA{
		1: {red, green, blue, white},
		2: {green, red, white, blue},
		3: {white, blue, green, red},
		4: {blue, white, red, green},
		5: {red, blue, green, white},
		6: {blue, red, white, green},
		7: {white, green, blue, red},
		8: {green, white, red, blue},
	}
	plain := encodeJPEG(t, quadrants(96, 64))
	for o := uint16(1); o <= 8; o++ {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			data := withOrientation(plain, o, bo)
			img, err := Decode(data, Limits{})
			if err != nil {
				t.Fatalf("orientation %d: %v", o, err)
			}
			w, h := 96, 64
			if o >= 5 {
				w, h = h, w
			}
			if img.Rect.Dx() != w || img.Rect.Dy() != h {
				t.Fatalf("orientation %d: size %v, want %dx%d", o, img.Rect.Size(), w, h)
			}
			checkCorners(t, img, want[o])
			info, err := DecodeConfig(data, Limits{})
			if err != nil || info.Orientation != int(o) || info.Width != w || info.Height != h {
				t.Fatalf("orientation %d: config %+v, %v", o, info, err)
			}
		}
	}
}

func TestEXIFMalformedIgnored(t *testing.T) {
	plain := encodeJPEG(t, quadrants(32, 16))
	good := withOrientation(plain, 6, binary.BigEndian)
	// Break the TIFF magic, the IFD offset, and the value: each leaves the
	// photo decodable, unrotated.
	for name, mutate := range map[string]func([]byte){
		"magic":  func(b []byte) { b[2+4+6+3] = 0 },
		"ifd":    func(b []byte) { b[2+4+6+4] = 0xFF },
		"value9": func(b []byte) { b[len(b)-len(plain)+2-6-1] = 9 },
	} {
		data := append([]byte{}, good...)
		mutate(data)
		img, err := Decode(data, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.Rect.Dx() != 32 {
			t.Fatalf("%s: rotated anyway: %v", name, img.Rect)
		}
	}
}

func TestDecodeForSize(t *testing.T) {
	photo := testenv.ReadPhoto(t, "franck_01829.jpg") // 720x576
	tests := []struct {
		minW, minH int
		w, h       int
		scale      float64
	}{
		{0, 0, 720, 576, 1},
		{320, 240, 360, 288, 0.5},
		{160, 120, 180, 144, 0.25},
		{90, 72, 90, 72, 0.125},
		{91, 0, 180, 144, 0.25},
		{361, 240, 720, 576, 1},
		{5000, 5000, 720, 576, 1},
	}
	for _, tc := range tests {
		img, scale, err := DecodeForSize(photo, Limits{}, tc.minW, tc.minH)
		if err != nil {
			t.Fatal(err)
		}
		if img.Rect.Dx() != tc.w || img.Rect.Dy() != tc.h || scale != tc.scale {
			t.Errorf("DecodeForSize(%d, %d) = %v at %v, want %dx%d at %v", tc.minW, tc.minH, img.Rect.Size(), scale, tc.w, tc.h, tc.scale)
		}
	}

	// Rounding up: 743x1155 at 1/8 is 93x145.
	joconde := testenv.ReadPhoto(t, "joconde.jpg")
	img, scale, err := DecodeForSize(joconde, Limits{}, 1, 1)
	if err != nil || img.Rect.Size() != image.Pt(93, 145) || scale != 0.125 {
		t.Fatalf("joconde 1/8: %v %v %v", img.Rect, scale, err)
	}

	// The requested size is upright: a 96x64 JPEG rotated to 64x96 must stay
	// at least 60 wide and 90 high, so only full scale fits.
	rotated := withOrientation(encodeJPEG(t, quadrants(96, 64)), 6, binary.BigEndian)
	img, scale, err = DecodeForSize(rotated, Limits{}, 30, 45)
	if err != nil || img.Rect.Size() != image.Pt(32, 48) || scale != 0.5 {
		t.Fatalf("rotated half: %v %v %v", img.Rect, scale, err)
	}
	img, scale, err = DecodeForSize(rotated, Limits{}, 60, 90)
	if err != nil || img.Rect.Size() != image.Pt(64, 96) || scale != 1 {
		t.Fatalf("rotated full: %v %v %v", img.Rect, scale, err)
	}
	checkCorners(t, img, [4]color.RGBA{{0, 0, 255, 255}, {255, 0, 0, 255}, {255, 255, 255, 255}, {0, 255, 0, 255}})

	// PNG has no reduced decode.
	img, scale, err = DecodeForSize(encodePNG(t, quadrants(64, 48)), Limits{}, 8, 6)
	if err != nil || img.Rect.Size() != image.Pt(64, 48) || scale != 1 {
		t.Fatalf("png: %v %v %v", img.Rect, scale, err)
	}
}

// A reduced decode is a proper downscale of the full one, not a crop.
func TestDecodeScaleMatchesFull(t *testing.T) {
	photo := testenv.ReadPhoto(t, "faces.jpg")
	full, err := Decode(photo, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	quarter, scale, err := DecodeForSize(photo, Limits{}, full.Rect.Dx()/4, full.Rect.Dy()/4)
	if err != nil || scale != 0.25 {
		t.Fatalf("%v %v", scale, err)
	}
	var diff, n float64
	for y := 0; y < quarter.Rect.Dy()-1; y++ {
		for x := 0; x < quarter.Rect.Dx()-1; x++ {
			q := quarter.RGBAAt(x, y)
			var sum float64
			for dy := 0; dy < 4; dy++ {
				for dx := 0; dx < 4; dx++ {
					sum += float64(full.RGBAAt(4*x+dx, 4*y+dy).G)
				}
			}
			diff += abs(sum/16 - float64(q.G))
			n++
		}
	}
	if mean := diff / n; mean > 4 {
		t.Fatalf("mean difference between 1/4 decode and 4x4 averages of the full decode: %.1f levels", mean)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func TestEncodeJPEGAndCrop(t *testing.T) {
	src := quadrants(64, 48)
	data, err := EncodeJPEG(src, 90)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := Sniff(data); f != JPEG {
		t.Fatalf("sniffed %q", f)
	}
	back, err := Decode(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	checkCorners(t, back, [4]color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}})

	for _, q := range []int{0, 101} {
		if _, err := EncodeJPEG(src, q); err == nil {
			t.Fatalf("quality %d accepted", q)
		}
	}
	if _, err := EncodeJPEG(image.NewRGBA(image.Rect(0, 0, 0, 0)), 80); err == nil {
		t.Fatal("empty image encoded")
	}
	// A non-RGBA source is converted.
	gray := image.NewGray(image.Rect(0, 0, 16, 16))
	if _, err := EncodeJPEG(gray, 80); err != nil {
		t.Fatal(err)
	}

	// The bottom-right quadrant grown by a margin past the edges: clamped.
	c, err := Crop(src, image.Rect(32, 24, 80, 70))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rect != image.Rect(0, 0, 32, 24) {
		t.Fatalf("crop bounds %v", c.Rect)
	}
	if got := c.RGBAAt(0, 0); got != (color.RGBA{255, 255, 255, 255}) {
		t.Fatalf("crop pixel %v", got)
	}
	// Sub-images (non-zero origin) and reversed rectangles.
	sub := src.SubImage(image.Rect(10, 10, 40, 40))
	c, err = Crop(sub, image.Rect(50, 50, 0, 0))
	if err != nil || c.Rect != image.Rect(0, 0, 30, 30) || c.RGBAAt(0, 0) != (color.RGBA{255, 0, 0, 255}) {
		t.Fatalf("crop of sub-image: %v %v", c, err)
	}
	if _, err := Crop(src, image.Rect(100, 100, 120, 120)); err == nil {
		t.Fatal("crop outside the image succeeded")
	}
}

// Cameras often leave a few bytes of padding before the end marker;
// libjpeg-turbo warns about them, and the photo must still decode.
func TestExtraneousBytesAccepted(t *testing.T) {
	plain := encodeJPEG(t, quadrants(64, 48))
	if !bytes.HasSuffix(plain, []byte{0xFF, 0xD9}) {
		t.Fatal("encoded JPEG does not end with EOI")
	}
	padded := append(append(append([]byte{}, plain[:len(plain)-2]...), 0x00, 0x00, 0x00), 0xFF, 0xD9)
	img, err := Decode(padded, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	checkCorners(t, img, [4]color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}})
}

// riffWebP wraps chunks (FourCC + payload) into a WebP file.
func riffWebP(chunks ...[]byte) []byte {
	var body []byte
	body = append(body, "WEBP"...)
	for _, c := range chunks {
		body = append(body, c[:4]...)
		body = binary.LittleEndian.AppendUint32(body, uint32(len(c)-4))
		body = append(body, c[4:]...)
		if len(c)%2 == 1 {
			body = append(body, 0)
		}
	}
	out := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	return append(out, body...)
}

// vp8x is a VP8X chunk announcing a w x h canvas.
func vp8x(w, h int) []byte {
	c := append([]byte("VP8X"), 0, 0, 0, 0)
	c = append(c, byte(w-1), byte((w-1)>>8), byte((w-1)>>16))
	return append(c, byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
}

// A 1x1 canvas in front of a 16384x16384 lossless frame (or a 16383x16383
// lossy one): the decoder would allocate for the frame, gigabytes from a
// file of a few dozen bytes. The frame is what the limit must see.
func TestWebPCanvasFrameMismatch(t *testing.T) {
	bits := uint32(16383) | uint32(16383)<<14 // width-1, height-1
	lossless := append([]byte("VP8L\x2f"), binary.LittleEndian.AppendUint32(nil, bits)...)
	lossless = append(lossless, make([]byte, 16)...)
	lossy := append([]byte("VP8 "), 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a)
	lossy = binary.LittleEndian.AppendUint16(lossy, 16383)
	lossy = binary.LittleEndian.AppendUint16(lossy, 16383)
	lossy = append(lossy, make([]byte, 16)...)
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"lossless", riffWebP(vp8x(1, 1), lossless), "webp frame 16384x16384 = 268435456 pixels (canvas 1x1), limit 40000000"},
		{"lossy", riffWebP(vp8x(1, 1), lossy), "webp frame 16383x16383 = 268402689 pixels (canvas 1x1), limit 40000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.data) > 100 {
				t.Fatalf("the bomb is %d bytes", len(tc.data))
			}
			for name, decode := range map[string]func([]byte) error{
				"config": func(b []byte) error { _, err := DecodeConfig(b, Limits{}); return err },
				"decode": func(b []byte) error { _, err := Decode(b, Limits{}); return err },
			} {
				err := decode(tc.data)
				if !errors.Is(err, ErrTooManyPixels) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("%s: got %v, want %v naming %q", name, err, ErrTooManyPixels, tc.msg)
				}
			}
		})
	}
	// Within the pixel limit, a frame that does not fill its canvas is
	// still refused: the canvas is what every caller was told.
	small := append([]byte("VP8L\x2f"), binary.LittleEndian.AppendUint32(nil, uint32(63)|uint32(63)<<14)...)
	small = append(small, make([]byte, 16)...)
	if _, err := DecodeConfig(riffWebP(vp8x(1, 1), small), Limits{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "canvas 1x1 but frame 64x64") {
		t.Fatalf("64x64 frame on a 1x1 canvas: %v", err)
	}
	// The real 1x1 files still decode (TestDecodeFormats); so does a VP8X
	// file whose frame matches its canvas.
	plain, err := base64.StdEncoding.DecodeString("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
	if err != nil {
		t.Fatal(err)
	}
	withX := riffWebP(vp8x(1, 1), append(append([]byte{}, plain[12:16]...), plain[20:]...))
	if img, err := Decode(withX, Limits{}); err != nil || img.Rect.Dx() != 1 {
		t.Fatalf("VP8X 1x1 + VP8L 1x1: %v", err)
	}
}

// progressiveCMYK builds a progressive (SOF2) four-component JPEG of 64x64
// with the given number of scans, each a minimal SOS segment followed by one
// byte of entropy-coded data. Go's decoder, which handles CMYK, would run a
// pass over the image for each.
func progressiveCMYK(scans int) []byte {
	b := []byte{0xFF, 0xD8}
	// Adobe APP14, transform 0: CMYK.
	b = append(b, 0xFF, 0xEE, 0, 14)
	b = append(b, "Adobe"...)
	b = append(b, 0, 100, 0, 0, 0, 0, 0)
	b = append(b, 0xFF, 0xC2, 0, 20, 8, 0, 64, 0, 64, 4)
	for id := byte(1); id <= 4; id++ {
		b = append(b, id, 0x11, 0)
	}
	for i := range scans {
		id := byte(i%4 + 1)
		b = append(b, 0xFF, 0xDA, 0, 8, 1, id, 0x00, 0, 0, 0x00, 0x55)
	}
	return append(b, 0xFF, 0xD9)
}

func TestJPEGScanLimit(t *testing.T) {
	bomb := progressiveCMYK(2000)
	for name, decode := range map[string]func([]byte) error{
		"config": func(b []byte) error { _, err := DecodeConfig(b, Limits{}); return err },
		"decode": func(b []byte) error { _, err := Decode(b, Limits{}); return err },
		"scaled": func(b []byte) error { _, _, err := DecodeForSize(b, Limits{}, 8, 8); return err },
	} {
		err := decode(bomb)
		if !errors.Is(err, ErrTooManyScans) || !strings.Contains(err.Error(), "more than 100 scans (SOS markers), limit 100") {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if got := walkJPEG(bomb, 5000); got.scans != 2000 || !got.frame {
		t.Fatalf("walk counted %+v, want 2000 scans and a frame", got)
	}
	// The limit is configurable and exact: 10 scans pass a limit of 10 (the
	// file then goes to the decoder, which may still find it corrupt).
	if _, err := DecodeConfig(progressiveCMYK(10), Limits{MaxScans: 10}); errors.Is(err, ErrTooManyScans) {
		t.Fatalf("10 scans at limit 10: %v", err)
	}
	if _, err := DecodeConfig(progressiveCMYK(11), Limits{MaxScans: 10}); !errors.Is(err, ErrTooManyScans) {
		t.Fatalf("11 scans at limit 10: %v", err)
	}
	// Real photos: a baseline JPEG has one scan (stuffed zeros in its
	// entropy-coded data are not markers); the Franck frames are
	// progressive with 7, decoded at a limit of 7 and refused at 6.
	if got := walkJPEG(testenv.ReadPhoto(t, "faces.jpg"), 100); got.scans != 1 || !got.frame {
		t.Fatalf("faces.jpg: %+v", got)
	}
	progressive := testenv.ReadPhoto(t, "franck_01829.jpg")
	if got := walkJPEG(progressive, 100); got.scans != 7 || !got.frame {
		t.Fatalf("franck_01829.jpg: %+v", got)
	}
	if img, err := Decode(progressive, Limits{MaxScans: 7}); err != nil || img.Rect.Dx() != 720 {
		t.Fatalf("progressive photo at its scan count: %v", err)
	}
	if _, err := Decode(progressive, Limits{MaxScans: 6}); !errors.Is(err, ErrTooManyScans) {
		t.Fatalf("progressive photo over the limit: %v", err)
	}
}

func TestFourByteJPEG(t *testing.T) {
	for _, data := range [][]byte{{0xFF, 0xD8, 0xFF, 0xD9}, {0xFF, 0xD8, 0xFF, 0xE0}} {
		_, err := Decode(data, Limits{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "jpeg of 4 bytes has no frame header (SOF marker)") {
			t.Fatalf("% x: %v", data, err)
		}
		if _, err := DecodeConfig(data, Limits{}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("config % x: %v", data, err)
		}
	}
}
