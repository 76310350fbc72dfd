package face

import (
	"image"
	"math"
)

// Pixel sampling for the three networks. Coordinates are continuous: pixel
// (i, j) of an image covers [i, i+1) x [j, j+1) and its centre is
// (i+0.5, j+0.5), in the image's own coordinate space (Rect.Min included).
// These loops run for every pixel the networks see and must cost a small
// fraction of the inference they feed: no function call per pixel, taps
// computed once where the geometry allows.

// sampler reads RGB from an RGBA image, clamping at the edges (a face box or
// an aligned crop may overflow the frame).
type sampler struct {
	pix        []uint8
	stride     int
	minX, minY float64
	w, h       int
}

func newSampler(img *image.RGBA) sampler {
	return sampler{
		pix: img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y):], stride: img.Stride,
		minX: float64(img.Rect.Min.X), minY: float64(img.Rect.Min.Y),
		w: img.Rect.Dx(), h: img.Rect.Dy(),
	}
}

// axis returns the two neighbouring pixel indices around continuous
// coordinate c (relative to the image origin) in [0, n) and the weight of
// the second.
func axis(c float64, n int) (i0, i1 int, a float32) {
	f := c - 0.5
	if !(f > 0) { // also NaN
		return 0, 0, 0
	}
	if f >= float64(n-1) { // also +Inf
		return n - 1, n - 1, 0
	}
	i0 = int(f) // f > 0: truncation is floor
	return i0, i0 + 1, float32(f - float64(i0))
}

// row writes len(r) bilinear samples taken at (x+i*dx, y+i*dy), i = 0, 1,
// ..., as p*mul+add into r, g and b: a row of a rotated crop. One call per
// row keeps the per-pixel work free of function calls.
func (s *sampler) row(x, y, dx, dy float64, mul, add float32, r, g, b []float32) {
	g = g[:len(r)]
	b = b[:len(r)]
	x -= s.minX
	y -= s.minY
	for i := range r {
		x0, x1, ax := axis(x, s.w)
		y0, y1, ay := axis(y, s.h)
		c0, c1 := 4*x0, 4*x1
		r0, r1 := y0*s.stride, y1*s.stride
		p00 := s.pix[r0+c0 : r0+c0+3 : r0+c0+3]
		p10 := s.pix[r0+c1 : r0+c1+3 : r0+c1+3]
		p01 := s.pix[r1+c0 : r1+c0+3 : r1+c0+3]
		p11 := s.pix[r1+c1 : r1+c1+3 : r1+c1+3]
		// Weights of the four neighbours.
		w11 := ax * ay
		w10 := ax - w11
		w01 := ay - w11
		w00 := 1 - ax - w01
		r[i] = (w00*u8f[p00[0]]+w10*u8f[p10[0]]+w01*u8f[p01[0]]+w11*u8f[p11[0]])*mul + add
		g[i] = (w00*u8f[p00[1]]+w10*u8f[p10[1]]+w01*u8f[p01[1]]+w11*u8f[p11[1]])*mul + add
		b[i] = (w00*u8f[p00[2]]+w10*u8f[p10[2]]+w01*u8f[p01[2]]+w11*u8f[p11[2]])*mul + add
		x += dx
		y += dy
	}
}

// u8f converts a byte to float32 by table: a load is cheaper than the
// integer-to-float instruction (the detector resize took 0.44 instead of
// 0.68 ms of CPU).
var u8f = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i)
	}
	return t
}()

// The embedder's and detector's input convention: RGB as (p-127)/128.
const (
	rgbMul, rgbAdd = 1.0 / 128, -127.0 / 128
)

// toCHW writes the whole image, resized to w x h, as planar RGB normalised
// to (p-127)/128 (the detector's convention) into dst (3*w*h values). The
// detector was trained on plain resizes, aspect ratio not kept. An image
// twice the size or more is first shrunk by block averaging: bilinear
// sampling alone would skip pixels and alias.
func toCHW(img *image.RGBA, w, h int, dst []float32) {
	if f := min(img.Rect.Dx()/w, img.Rect.Dy()/h); f >= 2 {
		img = shrink(img, img.Rect, f)
	}
	r := img.Rect
	plane := w * h
	resize(img, float64(r.Min.X), float64(r.Min.Y), float64(r.Max.X), float64(r.Max.Y), w, h,
		rgbMul, rgbAdd, dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane])
}

// greyCrop writes the box [x0, x1) x [y0, y1) resized to n x n as grey
// levels divided by 256 (the landmark network's convention) into dst.
func greyCrop(img *image.RGBA, x0, y0, x1, y1 float64, n int, dst []float32) {
	rgb := make([]float32, 3*n*n)
	R, G, B := rgb[:n*n], rgb[n*n:2*n*n], rgb[2*n*n:]
	resize(img, x0, y0, x1, y1, n, n, 1.0/256, 0, R, G, B)
	for i := range dst[:n*n] {
		dst[i] = 0.299*R[i] + 0.587*G[i] + 0.114*B[i]
	}
}

// resize samples the box [x0, x1) x [y0, y1) of img bilinearly on a w x h
// grid (pixel centres), writing p*mul+add into the planes R, G, B.
func resize(img *image.RGBA, x0, y0, x1, y1 float64, w, h int, mul, add float32, R, G, B []float32) {
	s := newSampler(img)
	sx, sy := (x1-x0)/float64(w), (y1-y0)/float64(h)
	// The column taps are the same for every row. (Resampling each source
	// row once and blending rows was no faster: writing the 0.9 MB detector
	// tensor dominates.)
	c0, c1, ax := make([]int, w), make([]int, w), make([]float32, w)
	for u := range w {
		i0, i1, a := axis(x0-s.minX+(float64(u)+0.5)*sx, s.w)
		c0[u], c1[u], ax[u] = 4*i0, 4*i1, a
	}
	for v := range h {
		j0, j1, ay := axis(y0-s.minY+(float64(v)+0.5)*sy, s.h)
		top := s.pix[j0*s.stride : j0*s.stride+4*s.w]
		bot := s.pix[j1*s.stride : j1*s.stride+4*s.w]
		o := v * w
		r, g, b := R[o:o+w], G[o:o+w], B[o:o+w]
		for u := range r {
			a := ax[u]
			p0, p1 := top[c0[u]:c0[u]+3:c0[u]+3], top[c1[u]:c1[u]+3:c1[u]+3]
			q0, q1 := bot[c0[u]:c0[u]+3:c0[u]+3], bot[c1[u]:c1[u]+3:c1[u]+3]
			tr := u8f[p0[0]] + a*(u8f[p1[0]]-u8f[p0[0]])
			tg := u8f[p0[1]] + a*(u8f[p1[1]]-u8f[p0[1]])
			tb := u8f[p0[2]] + a*(u8f[p1[2]]-u8f[p0[2]])
			br := u8f[q0[0]] + a*(u8f[q1[0]]-u8f[q0[0]])
			bg := u8f[q0[1]] + a*(u8f[q1[1]]-u8f[q0[1]])
			bb := u8f[q0[2]] + a*(u8f[q1[2]]-u8f[q0[2]])
			r[u] = (tr+ay*(br-tr))*mul + add
			g[u] = (tg+ay*(bg-tg))*mul + add
			b[u] = (tb+ay*(bb-tb))*mul + add
		}
	}
}

// warpCHW writes an n x n crop as planar RGB normalised to (p-127)/128: output
// pixel centre (u+0.5, v+0.5) samples the image bilinearly at inv applied to
// it. When one output pixel spans two or more source pixels (a large face),
// the region under the crop is first shrunk by averaging f x f blocks, like
// one level of a pyramid: a bilinear sample alone would alias, and the
// vector would change when the face moves by a fraction of a pixel (worst
// self-similarity 0.924 instead of 0.968, TestEmbeddingStability).
func warpCHW(img *image.RGBA, inv affine, n int, dst []float32) {
	if f := int(math.Round(inv.scale())); f >= 2 {
		r := footprint(inv, n).Inset(-f).Intersect(img.Rect)
		if !r.Empty() {
			img = shrink(img, r, f)
			k := 1 / float64(f)
			inv = affine{
				m00: inv.m00 * k, m01: inv.m01 * k, tx: (inv.tx - float64(r.Min.X)) * k,
				m10: inv.m10 * k, m11: inv.m11 * k, ty: (inv.ty - float64(r.Min.Y)) * k,
			}
		}
	}
	s := newSampler(img)
	plane := n * n
	R, G, B := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for v := range n {
		x, y := inv.apply(0.5, float64(v)+0.5)
		o := v * n
		s.row(x, y, inv.m00, inv.m10, rgbMul, rgbAdd, R[o:o+n], G[o:o+n], B[o:o+n])
	}
}

// footprint is the bounding box, in image pixels, of the n x n crop that
// inv maps into the image.
func footprint(inv affine, n int) image.Rectangle {
	x0, y0 := math.Inf(1), math.Inf(1)
	x1, y1 := math.Inf(-1), math.Inf(-1)
	for _, c := range [4][2]float64{{0, 0}, {float64(n), 0}, {0, float64(n)}, {float64(n), float64(n)}} {
		x, y := inv.apply(c[0], c[1])
		x0, y0 = math.Min(x0, x), math.Min(y0, y)
		x1, y1 = math.Max(x1, x), math.Max(y1, y)
	}
	// Clamp before converting: a degenerate transform must not overflow int.
	lim := func(v float64) int { return int(math.Max(-1<<30, math.Min(1<<30, v))) }
	return image.Rect(lim(math.Floor(x0)), lim(math.Floor(y0)), lim(math.Ceil(x1)), lim(math.Ceil(y1)))
}

// shrink returns region r of img reduced f times by averaging f x f blocks
// (the last row and column average what remains); pixel (i, j) of the result
// covers r.Min + f*(i, j).
func shrink(img *image.RGBA, r image.Rectangle, f int) *image.RGBA {
	w, h := (r.Dx()+f-1)/f, (r.Dy()+f-1)/f
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	// Sum f rows into per-byte column sums first (one straight loop over
	// every byte: a SWAR version was only 10% faster), then f columns per
	// output pixel.
	cols := make([]uint32, 4*r.Dx())
	for j := range h {
		clear(cols)
		y0, y1 := r.Min.Y+j*f, min(r.Min.Y+(j+1)*f, r.Max.Y)
		for y := y0; y < y1; y++ {
			o := img.PixOffset(r.Min.X, y)
			row := img.Pix[o : o+len(cols)]
			for k, v := range row {
				cols[k] += uint32(v)
			}
		}
		for i := range w {
			block := cols[4*i*f : 4*min((i+1)*f, r.Dx())]
			var sr, sg, sb uint32
			for k := 0; k+2 < len(block); k += 4 {
				sr += block[k]
				sg += block[k+1]
				sb += block[k+2]
			}
			n := uint32(len(block) / 4 * (y1 - y0))
			px := out.Pix[j*out.Stride+4*i : j*out.Stride+4*i+4 : j*out.Stride+4*i+4]
			px[0] = uint8((sr + n/2) / n)
			px[1] = uint8((sg + n/2) / n)
			px[2] = uint8((sb + n/2) / n)
			px[3] = 255
		}
	}
	return out
}
