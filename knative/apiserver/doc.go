// Package apiserver applies everything the repository deploys to a real
// kube-apiserver, started in-process by the tests, and replays upgrades.
//
// A JSON schema checks the shape of an object; the API server also runs the
// validation code behind each kind (a selector that matches its template,
// port names, probe, PodDisruptionBudget, CronJob and NetworkPolicy rules),
// the CustomResourceDefinitions' structural schemas with their defaults and
// CEL rules, immutable fields on update, and server-side apply's field
// ownership. Only the tests are code; the package itself is empty.
//
// # Layout
//
//   - controlplane_test.go: TestMain starts etcd (embedded) and kube-apiserver
//     (k8s.io/kubernetes at the floor this go.mod pins) on 127.0.0.1 and free
//     ports, installs the upstream CRDs, runs the tests, stops both; the logs
//     are kept when a test fails.
//   - crds_test.go: the upstream projects' CRDs, read from their Go modules.
//   - apply_test.go: server-side apply, Helm's order and hooks, upgrades.
//   - chart_test.go: every value set of the chart, the upgrade sequence, the
//     field managers of Helm and CD.
//   - crossplane_test.go: the XRD, the CRD Crossplane generates for it, the
//     example XRs, the compositions and the objects they compose.
//   - xrdcrd/: a command (its own module, Crossplane's Kubernetes version)
//     that prints the CRD Crossplane generates for an XRD, with Crossplane's
//     generator.
//   - rejections_test.go: broken objects the server must refuse.
package apiserver
