package imaging

import (
	"encoding/binary"
	"image"
)

// jpegOrientation returns the EXIF orientation (1..8) of a JPEG, or 1 when
// there is none or it cannot be read: a broken EXIF block is no reason to
// reject a photo whose pixels are fine.
func jpegOrientation(data []byte) int {
	// Walk the marker segments that precede the image data.
	i := 2 // after SOI
	for i+4 <= len(data) {
		if data[i] != 0xFF {
			return 1
		}
		marker := data[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			return 1
		}
		if marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7) { // no length
			i += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(data[i+2:]))
		if n < 2 || i+2+n > len(data) {
			return 1
		}
		seg := data[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		i += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF structure; 0 if absent
// or invalid.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	ifd := int64(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 0
	}
	count := int64(bo.Uint16(t[ifd:]))
	for k := int64(0); k < count; k++ {
		e := ifd + 2 + 12*k
		if e+12 > int64(len(t)) {
			return 0
		}
		tag, typ := bo.Uint16(t[e:]), bo.Uint16(t[e+2:])
		if tag != 0x0112 {
			continue
		}
		if typ != 3 { // SHORT, the only type the standard allows here
			return 0
		}
		if o := int(bo.Uint16(t[e+8:])); o >= 1 && o <= 8 {
			return o
		}
		return 0
	}
	return 0
}

// swapsAxes reports whether an orientation turns the image by 90 degrees.
func swapsAxes(orientation int) bool { return orientation >= 5 && orientation <= 8 }

// orient returns img transformed so that it displays upright for the given
// EXIF orientation. Orientation 1 (or unknown) returns img itself.
func orient(img *image.RGBA, orientation int) *image.RGBA {
	if orientation <= 1 || orientation > 8 {
		return img
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	dw, dh := w, h
	if swapsAxes(orientation) {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	// For each displayed pixel (dx, dy), the stored pixel it comes from is
	// (x0 + dx*ax + dy*ay, y0 + dx*bx + dy*by).
	var x0, ax, ay, y0, bx, by int
	switch orientation {
	case 2: // mirrored horizontally
		x0, ax, y0, by = w-1, -1, 0, 1
	case 3: // rotated 180
		x0, ax, y0, by = w-1, -1, h-1, -1
	case 4: // mirrored vertically
		x0, ax, y0, by = 0, 1, h-1, -1
	case 5: // transposed: stored row 0 is the left column, column 0 the top
		x0, ay, y0, bx = 0, 1, 0, 1
	case 6: // stored row 0 is the right column: rotate 90 clockwise
		x0, ay, y0, bx = 0, 1, h-1, -1
	case 7: // transverse: row 0 is the right column, column 0 the bottom
		x0, ay, y0, bx = w-1, -1, h-1, -1
	case 8: // stored row 0 is the left column: rotate 90 counter-clockwise
		x0, ay, y0, bx = w-1, -1, 0, 1
	}
	src := img.Pix
	for dy := 0; dy < dh; dy++ {
		row := dst.Pix[dy*dst.Stride : dy*dst.Stride+4*dw]
		for dx := 0; dx < dw; dx++ {
			sx := x0 + dx*ax + dy*ay
			sy := y0 + dx*bx + dy*by
			o := sy*img.Stride + 4*sx
			copy(row[4*dx:4*dx+4], src[o:o+4])
		}
	}
	return dst
}
