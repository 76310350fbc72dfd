// Package configs holds the service's default configuration, compiled into
// the binary so that `poi run` works with no file at hand.
package configs

import _ "embed"

// DefaultYAML is configs/poi.yaml: every key with its default value.
//
//go:embed poi.yaml
var DefaultYAML []byte
