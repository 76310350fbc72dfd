package imaging

/*
#cgo LDFLAGS: -lturbojpeg
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>

// Each helper owns its TurboJPEG handle for one call: a handle costs a few
// microseconds to create, and per-call handles need no pool and no locking.
// The error text lives in the handle, so it is copied out before tjDestroy.

static void poi_tj_err(tjhandle h, int *code, char *msg, int msglen) {
	*code = h ? tjGetErrorCode(h) : TJERR_FATAL;
	snprintf(msg, msglen, "%s", tjGetErrorStr2(h));
}

static int poi_tj_header(const unsigned char *buf, unsigned long size,
		int *w, int *h, int *cs, int *code, char *msg, int msglen) {
	tjhandle t = tjInitDecompress();
	if (!t) { poi_tj_err(NULL, code, msg, msglen); return -1; }
	int subsamp = 0;
	int r = tjDecompressHeader3(t, buf, size, w, h, &subsamp, cs);
	if (r != 0) poi_tj_err(t, code, msg, msglen);
	tjDestroy(t);
	return r;
}

static int poi_tj_decode(const unsigned char *buf, unsigned long size,
		unsigned char *dst, int w, int pitch, int h,
		int *code, char *msg, int msglen) {
	tjhandle t = tjInitDecompress();
	if (!t) { poi_tj_err(NULL, code, msg, msglen); return -1; }
	// FASTDCT: the faster, slightly less exact IDCT is far below what a
	// detector or embedder can notice. LIMITSCANS: a progressive JPEG with
	// thousands of scans is a CPU bomb, rejected after 500.
	int r = tjDecompress2(t, buf, size, dst, w, pitch, h, TJPF_RGBA,
		TJFLAG_FASTDCT | TJFLAG_LIMITSCANS);
	if (r != 0) poi_tj_err(t, code, msg, msglen);
	tjDestroy(t);
	return r;
}

static int poi_tj_encode(const unsigned char *src, int w, int pitch, int h,
		int quality, unsigned char **out, unsigned long *outSize,
		int *code, char *msg, int msglen) {
	tjhandle t = tjInitCompress();
	if (!t) { poi_tj_err(NULL, code, msg, msglen); return -1; }
	int r = tjCompress2(t, src, w, pitch, h, TJPF_RGBA, out, outSize,
		TJSAMP_420, quality, TJFLAG_FASTDCT);
	if (r != 0) poi_tj_err(t, code, msg, msglen);
	tjDestroy(t);
	return r;
}
*/
import "C"

import (
	"fmt"
	"image"
	"strings"
	"unsafe"
)

const tjMsgLen = 200

type tjError struct {
	code C.int
	msg  [tjMsgLen]C.char
}

func (e *tjError) String() string { return C.GoString(&e.msg[0]) }

// benign reports whether libjpeg only warned about something that leaves the
// picture intact. Extraneous bytes before a marker are common in camera
// output; every other warning (premature end of data, bad Huffman code)
// means missing or garbage pixels, which must not reach the face models.
func (e *tjError) benign() bool {
	return e.code == C.TJERR_WARNING && strings.Contains(e.String(), "extraneous bytes")
}

// turboHeader returns the stored size of a JPEG and whether it is CMYK/YCCK
// (which TurboJPEG cannot convert to RGB).
func turboHeader(data []byte) (w, h int, cmyk bool, err error) {
	var cw, ch, cs C.int
	var e tjError
	if C.poi_tj_header((*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)),
		&cw, &ch, &cs, &e.code, &e.msg[0], tjMsgLen) != 0 {
		return 0, 0, false, fmt.Errorf("%w: jpeg header: %s", ErrCorrupt, e.String())
	}
	return int(cw), int(ch), cs == C.TJCS_CMYK || cs == C.TJCS_YCCK, nil
}

// turboDecode decodes a JPEG to w x h RGBA, which must be the stored size
// scaled by one of libjpeg's factors.
func turboDecode(data []byte, w, h int) (*image.RGBA, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var e tjError
	if C.poi_tj_decode((*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)),
		(*C.uchar)(unsafe.Pointer(&img.Pix[0])), C.int(w), C.int(img.Stride), C.int(h),
		&e.code, &e.msg[0], tjMsgLen) != 0 && !e.benign() {
		return nil, fmt.Errorf("%w: jpeg: %s", ErrCorrupt, e.String())
	}
	return img, nil
}

// turboEncode compresses an RGBA image (alpha ignored) with 4:2:0 chroma.
func turboEncode(img *image.RGBA, quality int) ([]byte, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	var out *C.uchar
	var size C.ulong
	var e tjError
	pix := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y):]
	r := C.poi_tj_encode((*C.uchar)(unsafe.Pointer(&pix[0])), C.int(w), C.int(img.Stride), C.int(h),
		C.int(quality), &out, &size, &e.code, &e.msg[0], tjMsgLen)
	if out != nil {
		defer C.tjFree(out)
	}
	if r != 0 {
		return nil, fmt.Errorf("jpeg encode: %s", e.String())
	}
	return C.GoBytes(unsafe.Pointer(out), C.int(size)), nil
}
