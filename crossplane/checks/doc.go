// Package checks runs the PostgresCluster compositions through the real `crossplane render`
// (github.com/crossplane/crossplane/v2 cmd/crank, a tool of crossplane/go.mod) with the composition
// function served locally for render's Development runtime, and decodes what comes out into the
// upstream projects' Go API types with unknown fields rejected: CloudNativePG's api/v1 (Cluster,
// ScheduledBackup, Backup), the barman-cloud plugin's api/v1 (ObjectStore) and Kubernetes' core/v1
// (Secret). Kinds without a Go module here (prometheus-operator's PodMonitor, provider-aws-rds's
// kinds) stay with the JSON-schema checks in crossplane/tests.
//
// # Layout
//   - harness_test.go: builds the tools once (`go tool -n`), starts the function on a free
//     127.0.0.1 port, runs `crossplane render` and splits its output.
//   - render_test.go: every example XR against both compositions, the AWS reconciles, the
//     CloudNativePG-side properties checked with CloudNativePG's own functions.
//   - versions_test.go: docs/crossplane.md names the versions pinned in go.mod.
//   - gotemplating/: the composition function (see its package comment for why it is local).
package checks
