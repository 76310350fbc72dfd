package vectorindex

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Snapshot errors. Any error from a Load function means "rebuild from the
// authoritative source"; these sentinels let the caller log why.
var (
	// ErrNoSnapshot: the directory holds no snapshot (first start, or it
	// was deleted).
	ErrNoSnapshot = errors.New("vectorindex: no snapshot")
	// ErrCorruptSnapshot: a snapshot exists but a file is missing,
	// truncated, fails its checksum or does not parse.
	ErrCorruptSnapshot = errors.New("vectorindex: corrupt snapshot")
	// ErrModelMismatch: the snapshot holds vectors of another model
	// identity; loading it would compare vectors of different spaces.
	ErrModelMismatch = errors.New("vectorindex: snapshot is of another model")
)

// A snapshot directory holds one MANIFEST plus the data files it lists.
// Data files get a fresh generation in their names and are written before
// the manifest; the manifest is replaced by rename, which is the commit
// point, so a crash at any moment leaves either the old or the new snapshot
// complete. Files no manifest refers to are removed after the commit.
const (
	manifestFile   = "MANIFEST"
	manifestFormat = 1
	// snapshotPrefix marks every file this package writes in a snapshot
	// directory, so cleaning never touches anything else.
	snapshotPrefix = "vi-"
)

// manifestMagic starts every manifest; the version digit changes with the
// envelope layout.
var manifestMagic = [8]byte{'P', 'O', 'I', 'V', 'I', 'D', 'X', '1'}

// crcTable is CRC-32C: hardware accelerated, so checking a multi-gigabyte
// index adds little to its load time, and strong enough against truncation
// and bit rot (snapshots are not an adversarial input).
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// fileEntry records a data file with the size and checksum it was written
// with.
type fileEntry struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	CRC  uint32 `json:"crc32c"`
}

// manifest is the JSON payload of MANIFEST.
type manifest struct {
	Format   int       `json:"format"`
	Kind     string    `json:"kind"`
	Model    Model     `json:"model"`
	Position uint64    `json:"position"`
	Written  time.Time `json:"written"`
	// Meta is the index-specific metadata file (id maps, timestamps).
	Meta fileEntry `json:"meta"`
	// Indexes are the FAISS files, one per index or segment.
	Indexes []indexEntry `json:"indexes"`
	// Extra holds small index-specific settings.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// indexEntry is one FAISS file with the key it belongs to (segment start
// for the detection index, 0 for the POI index) and the mutation version it
// captured, which lets an unchanged segment reuse its file next time.
type indexEntry struct {
	Key     int64     `json:"key"`
	Version uint64    `json:"version"`
	File    fileEntry `json:"file"`
}

// newGeneration returns a token that makes this snapshot's file names
// distinct from any earlier one in the directory.
func newGeneration() string {
	return fmt.Sprintf("%x-%08x", time.Now().UnixNano(), rand.Uint32())
}

// writeGoFile writes a file through fn, computing its checksum on the way,
// and syncs it to disk.
func writeGoFile(dir, name string, fn func(w io.Writer) error) (fileEntry, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fileEntry{}, err
	}
	h := crc32.New(crcTable)
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if err := fn(bw); err != nil {
		f.Close()
		return fileEntry{}, err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fileEntry{}, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fileEntry{}, err
	}
	if err := f.Close(); err != nil {
		return fileEntry{}, err
	}
	return fileEntry{Name: name, Size: cw.n, CRC: h.Sum32()}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// sealFile checksums and syncs a file written by native code (FAISS writes
// through stdio and does not fsync).
func sealFile(dir, name string) (fileEntry, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
	if err != nil {
		return fileEntry{}, err
	}
	defer f.Close()
	h := crc32.New(crcTable)
	n, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fileEntry{}, err
	}
	if err := f.Sync(); err != nil {
		return fileEntry{}, err
	}
	return fileEntry{Name: name, Size: n, CRC: h.Sum32()}, nil
}

// verifyFile checks a listed file against its recorded size and checksum.
// Every file is verified before FAISS parses it: FAISS trusts its input,
// and a damaged file should end as ErrCorruptSnapshot, not as whatever a
// garbage length field makes native code do.
func verifyFile(dir string, e fileEntry) error {
	if e.Name == "" || e.Name != filepath.Base(e.Name) || !strings.HasPrefix(e.Name, snapshotPrefix) {
		return fmt.Errorf("%w: bad file name %q in manifest", ErrCorruptSnapshot, e.Name)
	}
	f, err := os.Open(filepath.Join(dir, e.Name))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	if st.Size() != e.Size {
		return fmt.Errorf("%w: %s is %d bytes, manifest says %d", ErrCorruptSnapshot, e.Name, st.Size(), e.Size)
	}
	h := crc32.New(crcTable)
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return fmt.Errorf("%w: reading %s: %v", ErrCorruptSnapshot, e.Name, err)
	}
	if h.Sum32() != e.CRC {
		return fmt.Errorf("%w: %s fails its checksum", ErrCorruptSnapshot, e.Name)
	}
	return nil
}

// commitManifest atomically replaces dir/MANIFEST, then removes data files
// that the new manifest no longer lists.
func commitManifest(dir string, m manifest) error {
	payload, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	var env bytes.Buffer
	env.Write(manifestMagic[:])
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(payload)))
	binary.LittleEndian.PutUint32(hdr[8:], crc32.Checksum(payload, crcTable))
	env.Write(hdr[:])
	env.Write(payload)

	tmp := filepath.Join(dir, snapshotPrefix+"manifest-"+newGeneration()+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := f.Write(env.Bytes()); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, manifestFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit manifest: %w", err)
	}
	// The rename is durable only once the directory entry is synced.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync snapshot directory: %w", err)
		}
	}
	keep := map[string]bool{m.Meta.Name: true}
	for _, ie := range m.Indexes {
		keep[ie.File.Name] = true
	}
	removeStale(dir, keep)
	return nil
}

// removeStale deletes this package's files that are not in keep. Failures
// are ignored: a leftover file wastes space but never breaks a snapshot.
func removeStale(dir string, keep map[string]bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), snapshotPrefix) || keep[e.Name()] {
			continue
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

// readManifest loads and checks dir/MANIFEST for an index of the given kind
// and model.
func readManifest(dir, kind string, model Model) (manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return manifest{}, fmt.Errorf("%w in %s", ErrNoSnapshot, dir)
	}
	if err != nil {
		return manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	if len(raw) < 20 || !bytes.Equal(raw[:8], manifestMagic[:]) {
		return manifest{}, fmt.Errorf("%w: manifest header", ErrCorruptSnapshot)
	}
	n := binary.LittleEndian.Uint64(raw[8:16])
	sum := binary.LittleEndian.Uint32(raw[16:20])
	payload := raw[20:]
	if uint64(len(payload)) != n {
		return manifest{}, fmt.Errorf("%w: manifest is %d bytes, header says %d", ErrCorruptSnapshot, len(payload), n)
	}
	if crc32.Checksum(payload, crcTable) != sum {
		return manifest{}, fmt.Errorf("%w: manifest fails its checksum", ErrCorruptSnapshot)
	}
	var m manifest
	if err := json.Unmarshal(payload, &m); err != nil {
		return manifest{}, fmt.Errorf("%w: manifest: %v", ErrCorruptSnapshot, err)
	}
	if m.Format != manifestFormat {
		return manifest{}, fmt.Errorf("%w: manifest format %d, want %d", ErrCorruptSnapshot, m.Format, manifestFormat)
	}
	if m.Kind != kind {
		return manifest{}, fmt.Errorf("%w: directory holds a %q snapshot, want %q", ErrCorruptSnapshot, m.Kind, kind)
	}
	if m.Model != model {
		return manifest{}, fmt.Errorf("%w: snapshot %s, index %s", ErrModelMismatch, m.Model, model)
	}
	return m, nil
}

// binWriter and binReader carry the metadata files: fixed-width little-
// endian fields, because a million ids and timestamps as JSON would dominate
// the load time the snapshot exists to save.
type binWriter struct {
	w   io.Writer
	buf [8]byte
	err error
}

func (b *binWriter) u64(v uint64) {
	if b.err != nil {
		return
	}
	binary.LittleEndian.PutUint64(b.buf[:], v)
	_, b.err = b.w.Write(b.buf[:])
}

func (b *binWriter) i64(v int64) { b.u64(uint64(v)) }

func (b *binWriter) str(s string) {
	b.u64(uint64(len(s)))
	if b.err == nil {
		_, b.err = io.WriteString(b.w, s)
	}
}

type binReader struct {
	r   *bufio.Reader
	buf [8]byte
	err error
}

func (b *binReader) u64() uint64 {
	if b.err != nil {
		return 0
	}
	if _, err := io.ReadFull(b.r, b.buf[:]); err != nil {
		b.err = err
		return 0
	}
	return binary.LittleEndian.Uint64(b.buf[:])
}

func (b *binReader) i64() int64 { return int64(b.u64()) }

// count reads a length and rejects values above limit, so a damaged length
// cannot turn into a giant allocation.
func (b *binReader) count(limit uint64) int {
	n := b.u64()
	if b.err == nil && n > limit {
		b.err = fmt.Errorf("length %d above limit %d", n, limit)
		return 0
	}
	return int(n)
}

func (b *binReader) str() string {
	n := b.count(1 << 20)
	if b.err != nil {
		return ""
	}
	s := make([]byte, n)
	if _, err := io.ReadFull(b.r, s); err != nil {
		b.err = err
		return ""
	}
	return string(s)
}

// openMeta opens a verified metadata file and checks its magic.
func openMeta(dir string, e fileEntry, magic string) (*os.File, *binReader, error) {
	f, err := os.Open(filepath.Join(dir, e.Name))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	br := &binReader{r: bufio.NewReaderSize(f, 1<<20)}
	got := make([]byte, len(magic))
	if _, err := io.ReadFull(br.r, got); err != nil || string(got) != magic {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: bad header", ErrCorruptSnapshot, e.Name)
	}
	return f, br, nil
}
