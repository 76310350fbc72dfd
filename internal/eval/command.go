package eval

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"poi/internal/config"
	"poi/internal/face"
	"poi/internal/node"
)

// Main runs `poi eval` with the arguments after "eval" and the process
// environment (for the configuration), and returns the exit code: 0, 1 when
// the evaluation failed, 2 for bad usage or configuration.
func Main(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("poi eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", lookup(environ, "POI_CONFIG"), "YAML configuration file")
	split := fs.Bool("split", false, "also calibrate thresholds on half the identities and test them on the other half")
	seed := fs.Uint64("seed", 1, "seed of the identity split")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: poi eval DIR [flags]\n\nDIR holds one folder per identity with that person's photos.\n\n")
		fs.PrintDefaults()
	}
	dirs, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(dirs) != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*cfgPath, environ)
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	log := cfg.Log.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r, err := Run(ctx, cfg, dirs[0], *split, *seed, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "poi: eval: write report: %v\n", err)
		return 1
	}
	return 0
}

// errUsage marks errors that are the caller's to fix (a folder with no
// photos), as opposed to failures of the evaluation.
var errUsage = errors.New("nothing to evaluate")

// Run embeds the photos of dir with the face engine cfg describes and
// evaluates them at the configured thresholds (face.match_threshold,
// face.search_threshold) and DefaultTargetFARs.
func Run(ctx context.Context, cfg config.Config, dir string, split bool, seed uint64, log *slog.Logger) (Report, error) {
	photos, err := ListPhotos(dir)
	if err != nil {
		return Report{}, err
	}
	if len(photos) == 0 {
		return Report{}, fmt.Errorf("eval: %w: no photos in %s/{identity}/", errUsage, dir)
	}
	e, err := face.New(node.FaceConfig(cfg))
	if err != nil {
		return Report{}, fmt.Errorf("eval: face.model_dir / face.ort_library: %w", err)
	}
	defer e.Close()
	log.Info("embedding", "photos", len(photos), "dir", dir, "model", e.Model().Name)

	faces, skipped, err := Embed(ctx, e, photos, runtime.NumCPU(), log)
	if err != nil {
		return Report{}, err
	}
	opt := Options{
		TargetFARs: DefaultTargetFARs(),
		Thresholds: []Threshold{
			{Name: "face.match_threshold", Value: cfg.Face.MatchThreshold},
			{Name: "face.search_threshold", Value: cfg.Face.SearchThreshold},
		},
	}
	r := Evaluate(faces, opt)
	r.Model, r.Dir, r.Skipped = e.Model().Name, dir, skipped
	if split {
		sp := EvaluateSplit(faces, seed, opt)
		r.Split = &sp
	}
	return r, nil
}

// parseInterleaved parses flags placed before or after the positional
// arguments (`poi eval DIR --split` as well as `poi eval --split DIR`);
// the flag package alone stops at the first positional one.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func lookup(environ []string, key string) string {
	for _, kv := range environ {
		if len(kv) > len(key) && kv[:len(key)] == key && kv[len(key)] == '=' {
			return kv[len(key)+1:]
		}
	}
	return ""
}
