package imaging

import (
	"encoding/binary"
	"fmt"
)

// webpFrame returns the size of the first VP8 or VP8L frame of a WebP
// file, read from the frame's own header. The decoder allocates for this
// size, not for the VP8X canvas that DecodeConfig reports, so a file whose
// canvas is 1x1 and whose frame is 16384x16384 must be judged by the frame.
func webpFrame(data []byte) (w, h int, err error) {
	corrupt := func(format string, args ...any) (int, int, error) {
		return 0, 0, fmt.Errorf("%w: webp: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(data) < 12 {
		return corrupt("%d bytes, shorter than the RIFF header", len(data))
	}
	for off := 12; off+8 <= len(data); {
		fourcc := string(data[off : off+4])
		size := int64(binary.LittleEndian.Uint32(data[off+4 : off+8]))
		body := data[off+8:]
		if size < int64(len(body)) {
			body = body[:size]
		}
		switch fourcc {
		case "VP8 ":
			// Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width
			// and height, each with 2 bits of scaling on top.
			if len(body) < 10 || body[3] != 0x9d || body[4] != 0x01 || body[5] != 0x2a {
				return corrupt("VP8 frame header missing or without its start code")
			}
			return int(binary.LittleEndian.Uint16(body[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(body[8:]) & 0x3fff), nil
		case "VP8L":
			// Signature 0x2f, then width-1 and height-1 in 14 bits each.
			if len(body) < 5 || body[0] != 0x2f {
				return corrupt("VP8L frame header missing or without its signature")
			}
			bits := binary.LittleEndian.Uint32(body[1:5])
			return int(bits&0x3fff) + 1, int((bits>>14)&0x3fff) + 1, nil
		}
		// Chunks are padded to an even length.
		next := int64(off) + 8 + size + size&1
		if next > int64(len(data)) {
			break
		}
		off = int(next)
	}
	return corrupt("no VP8 or VP8L frame chunk")
}

// jpegScan is what a walk over a JPEG's markers found.
type jpegScan struct {
	scans int  // SOS markers
	frame bool // a start-of-frame marker (SOF0..SOF15 but DHT, JPG, DAC)
}

// walkJPEG counts the scans (SOS markers) of a JPEG, stopping as soon as
// there are more than maxScans. Each scan of a progressive JPEG is a pass
// over the whole image, and Go's decoder (used for CMYK) has no limit of
// its own, so the count bounds the CPU a small file can cost. The walk
// stops quietly at truncation: the decoder reports that better.
func walkJPEG(data []byte, maxScans int) jpegScan {
	var s jpegScan
	i := 2 // after SOI
	for i+1 < len(data) {
		if data[i] != 0xFF {
			return s // not at a marker: corrupt, left to the decoder
		}
		m := data[i+1]
		i += 2
		switch {
		case m == 0xFF:
			i-- // fill byte: the next 0xFF may start the marker
			continue
		case m == 0xD9: // EOI
			return s
		case m == 0x01 || (m >= 0xD0 && m <= 0xD8): // no length
			continue
		}
		if i+2 > len(data) {
			return s
		}
		n := int(binary.BigEndian.Uint16(data[i:]))
		if n < 2 {
			return s
		}
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			s.frame = true
		}
		i += n
		if m != 0xDA {
			continue
		}
		s.scans++
		if s.scans > maxScans {
			return s
		}
		// Entropy-coded data up to the next marker: 0xFF followed by
		// anything but a stuffed zero or a restart marker.
		for i+1 < len(data) {
			if data[i] == 0xFF && data[i+1] != 0 && (data[i+1] < 0xD0 || data[i+1] > 0xD7) {
				break
			}
			i++
		}
	}
	return s
}
