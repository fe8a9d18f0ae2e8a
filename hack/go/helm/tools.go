//go:build tools

// Package tools pins the binaries hack/build-tools.sh builds.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
