module github.com/webhook-ca-operator/bench/reloader

go 1.26

require github.com/stakater/Reloader v1.4.21

// Reloader v1.4.21 pins a github.com/openshift/api pseudo-version that the module proxy no
// longer serves; this one does and builds it.
replace github.com/openshift/api => github.com/openshift/api v0.0.0-20260326111139-30c2ef7a272e
