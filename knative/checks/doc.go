// Package checks validates the exam-results Helm chart with Knative Serving's
// own code: every serving.knative.dev object the chart renders is decoded into
// knative.dev/serving/pkg/apis/serving/v1 types, defaulted and validated as
// Knative's admission webhook does, with the configuration Knative ships
// (config-autoscaler, config-defaults, config-features from the
// knative.dev/serving module's config/core/configmaps), and each step of an
// upgrade is validated as an update of the object before it.
//
// The chart is rendered by knative/helm_template.py (the Helm SDK the Python
// chart tests use), so both suites check the same rendering.
//
// # Layout
//   - render_test.go: rendering the chart and decoding its Knative Services.
//   - knative_test.go: Knative's configuration stores and its webhook steps.
//   - valuesets_test.go: the named value sets validate in Knative.
//   - upgrade_test.go: an upgrade sequence validated step by step as updates.
//   - rules_test.go: what the chart refuses is what Knative refuses, and the
//     per-revision autoscaling knobs it accepts Knative accepts.
package checks
