//go:build tools

// Package helm pins the helm command that ../build.sh compiles.
package helm

import _ "helm.sh/helm/v3/cmd/helm"
