package imaging

import (
	"fmt"
	"image"
	"image/draw"
)

// EncodeJPEG compresses img (alpha ignored) as a baseline 4:2:0 JPEG with
// quality 1..100, through libjpeg-turbo.
func EncodeJPEG(img image.Image, quality int) ([]byte, error) {
	if quality < 1 || quality > 100 {
		return nil, fmt.Errorf("jpeg encode: quality %d outside 1..100", quality)
	}
	if img == nil || img.Bounds().Empty() {
		return nil, fmt.Errorf("jpeg encode: empty image")
	}
	rgba, ok := img.(*image.RGBA)
	if !ok {
		rgba = toRGBA(img)
	}
	return turboEncode(rgba, quality)
}

// Crop returns a copy of the part of img inside r, clamped to the bounds of
// img, with origin (0, 0); typically a face box (possibly grown by a margin
// that overflows the frame) for a thumbnail. It fails when r and the image do
// not overlap.
func Crop(img image.Image, r image.Rectangle) (*image.RGBA, error) {
	c := r.Canon().Intersect(img.Bounds())
	if c.Empty() {
		return nil, fmt.Errorf("crop: rectangle %v does not overlap image bounds %v", r, img.Bounds())
	}
	dst := image.NewRGBA(image.Rect(0, 0, c.Dx(), c.Dy()))
	draw.Draw(dst, dst.Rect, img, c.Min, draw.Src)
	return dst, nil
}
