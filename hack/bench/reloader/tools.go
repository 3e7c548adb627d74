//go:build tools

// Package tools pins stakater Reloader so that `go build github.com/stakater/Reloader` resolves
// from this module's go.mod/go.sum.
package tools

import _ "github.com/stakater/Reloader"
