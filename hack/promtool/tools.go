//go:build tools

// Package tools pins promtool in this module's go.mod and go.sum.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
