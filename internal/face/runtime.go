package face

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// minORTVersion is the oldest ONNX Runtime whose C API onnxruntime_go v1.27
// was built against (ORT_API_VERSION 24). Newer libraries serve older API
// versions, so this is a floor, not a pin: set-up pins 1.24.1, and
// RESEARCH.md reports 1.30.0 working too.
const minORTVersion = "1.24"

// ortEnv is the process-wide ONNX Runtime environment. onnxruntime_go keeps
// it in package variables and it can only be created once, from one library
// path, so every Engine shares it: this is the one global state of the
// package. A mutex rather than a sync.Once, because a failed attempt (a wrong
// path in a config) must leave the next, correct, attempt possible. The
// environment is never destroyed: engines come and go, and re-creating it
// would race with another engine's sessions.
var ortEnv struct {
	sync.Mutex
	path    string // library the environment was created from
	version string
}

// initORT loads the ONNX Runtime library at path into the process, once, and
// checks its version.
func initORT(path string) (version string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("onnx runtime library %q: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("onnx runtime library: %w (run `go tool task setup` or set the library path)", err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("onnx runtime library %s is a directory, want the libonnxruntime.so file", abs)
	}

	ortEnv.Lock()
	defer ortEnv.Unlock()
	if ortEnv.path != "" {
		if !sameFile(ortEnv.path, abs) {
			return "", fmt.Errorf("onnx runtime library %s: the process already runs ONNX Runtime from %s, and one process can load only one", abs, ortEnv.path)
		}
		return ortEnv.version, nil
	}
	if ort.IsInitialized() {
		// Someone initialised onnxruntime_go without this package: the
		// library path is unknown, but the version can still be checked.
		v := ort.GetVersion()
		if err := checkVersion(v, abs); err != nil {
			return "", err
		}
		ortEnv.path, ortEnv.version = abs, v
		return v, nil
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		// If the library loaded but was too old, its version string is
		// known and says more than the API error.
		if v := ort.GetVersion(); v != "" {
			if verr := checkVersion(v, abs); verr != nil {
				return "", verr
			}
		}
		return "", fmt.Errorf("onnx runtime library %s: %w", abs, err)
	}
	v := ort.GetVersion()
	if err := checkVersion(v, abs); err != nil {
		// Nothing else can use this environment: release it so that a
		// correct library can be loaded instead.
		_ = ort.DestroyEnvironment()
		return "", err
	}
	ortEnv.path, ortEnv.version = abs, v
	return v, nil
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// checkVersion fails unless version (for example "1.24.1") is at least
// minORTVersion.
func checkVersion(version, path string) error {
	if versionAtLeast(version, minORTVersion) {
		return nil
	}
	return fmt.Errorf("onnx runtime library %s is version %q, need %s or newer (onnxruntime_go v1.27 uses its C API 24)", path, version, minORTVersion)
}

func versionAtLeast(version, floor string) bool {
	parse := func(s string) (major, minor int, ok bool) {
		parts := strings.SplitN(s, ".", 3)
		if len(parts) < 2 {
			return 0, 0, false
		}
		a, err1 := strconv.Atoi(parts[0])
		b, err2 := strconv.Atoi(parts[1])
		return a, b, err1 == nil && err2 == nil
	}
	vMaj, vMin, ok := parse(version)
	fMaj, fMin, _ := parse(floor)
	if !ok {
		return false
	}
	return vMaj > fMaj || (vMaj == fMaj && vMin >= fMin)
}

// model is one ONNX network with a fixed pool of pre-allocated input and
// output tensors. A session's Run is thread-safe in ONNX Runtime, so one
// session serves every goroutine; the pool bounds how many runs are in
// flight and spares an allocation per run.
type model struct {
	name    string
	session *ort.DynamicAdvancedSession
	in      ort.InputOutputInfo
	outs    []ort.InputOutputInfo
	pool    chan *tensors
}

type tensors struct {
	in      *ort.Tensor[float32]
	outs    []*ort.Tensor[float32]
	inVals  []ort.Value
	outVals []ort.Value
	outData [][]float32
}

// loadModel creates a session for the ONNX file data (named name in
// errors) with its shapes read from the model itself. The model must have one
// float input and float outputs with fixed shapes.
func loadModel(name string, data []byte, opts *ort.SessionOptions, parallel int) (*model, error) {
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("%s: read inputs and outputs: %w", name, err)
	}
	if len(ins) != 1 {
		return nil, fmt.Errorf("%s: %d inputs, want 1", name, len(ins))
	}
	for _, io := range append(ins[:1:1], outs...) {
		if io.OrtValueType != ort.ONNXTypeTensor || io.DataType != ort.TensorElementDataTypeFloat {
			return nil, fmt.Errorf("%s: %s is not a float tensor", name, io.String())
		}
		for _, d := range io.Dimensions {
			if d <= 0 {
				return nil, fmt.Errorf("%s: %s has a dynamic dimension; this engine needs fixed shapes", name, io.String())
			}
		}
	}
	outNames := make([]string, len(outs))
	for i, o := range outs {
		outNames[i] = o.Name
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{ins[0].Name}, outNames, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: create session: %w", name, err)
	}
	m := &model{name: name, session: s, in: ins[0], outs: outs, pool: make(chan *tensors, parallel)}
	for i := 0; i < parallel; i++ {
		t, err := m.newTensors()
		if err != nil {
			m.destroy()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m.pool <- t
	}
	return m, nil
}

func (m *model) newTensors() (*tensors, error) {
	t := &tensors{}
	var err error
	if t.in, err = ort.NewEmptyTensor[float32](m.in.Dimensions); err != nil {
		return nil, fmt.Errorf("allocate input tensor: %w", err)
	}
	t.inVals = []ort.Value{t.in}
	for _, o := range m.outs {
		out, err := ort.NewEmptyTensor[float32](o.Dimensions)
		if err != nil {
			t.destroy()
			return nil, fmt.Errorf("allocate output tensor: %w", err)
		}
		t.outs = append(t.outs, out)
		t.outVals = append(t.outVals, out)
		t.outData = append(t.outData, out.GetData())
	}
	return t, nil
}

func (t *tensors) destroy() {
	if t.in != nil {
		_ = t.in.Destroy()
	}
	for _, o := range t.outs {
		_ = o.Destroy()
	}
}

// run fills the input with prepare, runs the network and hands the outputs
// (in the model's output order) to collect, which must not keep them.
func (m *model) run(prepare func(in []float32), collect func(outs [][]float32)) error {
	t := <-m.pool
	defer func() { m.pool <- t }()
	prepare(t.in.GetData())
	if err := m.session.Run(t.inVals, t.outVals); err != nil {
		return fmt.Errorf("%s: run: %w", m.name, err)
	}
	collect(t.outData)
	return nil
}

// destroy frees the tensors and the session. The caller guarantees that no
// run is in flight (Engine.Close holds the engine's lock exclusively), so
// every tensor set is in the pool.
func (m *model) destroy() {
	for len(m.pool) > 0 {
		(<-m.pool).destroy()
	}
	_ = m.session.Destroy()
}
