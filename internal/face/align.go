package face

import "math"

// Point is a position in image pixels (continuous coordinates: the centre of
// pixel (i, j) is (i+0.5, j+0.5)).
type Point struct{ X, Y float64 }

// arcFaceTemplate is where the five points land in the 112x112 crop the
// embedder was trained on (the standard ArcFace template, in pixel-index
// coordinates, hence +0.5 when used): eye centres, nose tip, mouth corners,
// image-left first.
var arcFaceTemplate = [5]Point{
	{38.2946, 51.6963},
	{73.5318, 51.5014},
	{56.0252, 71.7366},
	{41.5493, 92.3655},
	{70.7299, 92.2041},
}

// affine maps (x, y) to (m00*x + m01*y + tx, m10*x + m11*y + ty).
type affine struct{ m00, m01, tx, m10, m11, ty float64 }

func (t affine) apply(x, y float64) (float64, float64) {
	return t.m00*x + t.m01*y + t.tx, t.m10*x + t.m11*y + t.ty
}

// scale is the mean length a unit vector gets under t.
func (t affine) scale() float64 {
	return math.Sqrt(math.Abs(t.m00*t.m11 - t.m01*t.m10))
}

func (t affine) invert() affine {
	det := t.m00*t.m11 - t.m01*t.m10
	i := affine{m00: t.m11 / det, m01: -t.m01 / det, m10: -t.m10 / det, m11: t.m00 / det}
	i.tx = -(i.m00*t.tx + i.m01*t.ty)
	i.ty = -(i.m10*t.tx + i.m11*t.ty)
	return i
}

// similarity returns the rotation+uniform scale+translation that maps src
// onto dst with the least squared error (Umeyama's solution restricted to
// proper rotations: a face is never mirrored). In two dimensions the SVD of
// the cross-covariance reduces to two sums.
func similarity(src, dst []Point) affine {
	n := float64(len(src))
	var sx, sy, dx, dy float64
	for i := range src {
		sx += src[i].X
		sy += src[i].Y
		dx += dst[i].X
		dy += dst[i].Y
	}
	sx, sy, dx, dy = sx/n, sy/n, dx/n, dy/n
	var dot, cross, varSrc float64
	for i := range src {
		px, py := src[i].X-sx, src[i].Y-sy
		qx, qy := dst[i].X-dx, dst[i].Y-dy
		dot += px*qx + py*qy
		cross += px*qy - py*qx
		varSrc += px*px + py*py
	}
	if varSrc == 0 {
		return affine{m00: 1, m11: 1, tx: dx - sx, ty: dy - sy}
	}
	a, b := dot/varSrc, cross/varSrc
	return affine{m00: a, m01: -b, m10: b, m11: a, tx: dx - (a*sx - b*sy), ty: dy - (b*sx + a*sy)}
}

// alignment returns the map from the pixels of an n x n crop to the image
// that puts the landmarks lm on the ArcFace template (scaled from 112 to n).
func alignment(lm [5]Point, n int) affine {
	var dst [5]Point
	k := float64(n) / 112
	for i, p := range arcFaceTemplate {
		// Template coordinates are pixel indices: +0.5 for Point's.
		dst[i] = Point{(p.X + 0.5) * k, (p.Y + 0.5) * k}
	}
	return similarity(lm[:], dst[:]).invert()
}
