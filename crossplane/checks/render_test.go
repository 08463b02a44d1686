package checks

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	cnpgv1 "github.com/cloudnative-pg/cloudnative-pg/api/v1"
	barmanv1 "github.com/cloudnative-pg/plugin-barman-cloud/api/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const providerLabel = "exam-results.io/provider"

// connectionKeys is the connection Secret's contract with the exam-results chart, sorted.
func connectionKeys(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "tests", "connection_secret_keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	sort.Strings(keys)
	return keys
}

// runtimeRoles are the login roles the functions use, and the group role each joins.
var runtimeRoles = map[string]string{"exam_app": "exam_results_writer", "exam_reader": "exam_results_reader"}

// schemaOnly are the kinds the compositions compose that have no Go module here; the JSON-schema
// checks in crossplane/tests cover them.
var schemaOnly = map[string]bool{
	"monitoring.coreos.com/v1, Kind=PodMonitor":         true,
	"rds.aws.m.upbound.io/v1beta1, Kind=Instance":       true,
	"rds.aws.m.upbound.io/v1beta1, Kind=SubnetGroup":    true,
	"rds.aws.m.upbound.io/v1beta1, Kind=ParameterGroup": true,
}

var (
	requiredResources = filepath.Join("testdata", "required-resources.yaml")
	compositions      = map[string]string{
		"in-cluster": filepath.Join(root, "apis", "postgrescluster", "composition-in-cluster.yaml"),
		"aws":        filepath.Join(root, "apis", "postgrescluster", "composition-aws.yaml"),
	}
)

// exampleXRs are every PostgresCluster under examples/ and operations/, with the provider each selects.
func exampleXRs(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	ops, _ := filepath.Glob(filepath.Join(root, "operations", "*.yaml"))
	xrs := map[string]string{}
	for _, f := range append(files, ops...) {
		u := readObject(t, f)
		if u.GetKind() != "PostgresCluster" {
			continue
		}
		p, _, _ := unstructured.NestedString(u.Object, "spec", "crossplane", "compositionSelector", "matchLabels", providerLabel)
		xrs[f] = p
	}
	if len(xrs) < 4 {
		t.Fatalf("found %d example XRs, want dev, prod, prod-aws and the restore", len(xrs))
	}
	return xrs
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

// strictDecode decodes an object into its Go API type the way the API server reads a request with
// strict field validation: unknown and duplicate fields are errors, names are case-sensitive.
func strictDecode(u *unstructured.Unstructured, into runtime.Object) error {
	raw, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(raw, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func decodeStrict(t *testing.T, u *unstructured.Unstructured, into runtime.Object) bool {
	t.Helper()
	if err := strictDecode(u, into); err != nil {
		t.Errorf("%s %s: %v", u.GroupVersionKind().Kind, u.GetName(), err)
		return false
	}
	return true
}

// typed is one render, decoded.
type typed struct {
	xr               *unstructured.Unstructured
	byName           map[string]*unstructured.Unstructured
	secrets          map[string]*corev1.Secret // by Secret name
	cluster          *cnpgv1.Cluster
	objectStores     map[string]*barmanv1.ObjectStore
	scheduledBackups []*cnpgv1.ScheduledBackup
}

// decodeAll decodes every rendered object into its Go type; a kind with neither a Go type nor a
// JSON-schema check, or a function result, is an error.
func decodeAll(t *testing.T, objs []*unstructured.Unstructured) typed {
	t.Helper()
	out := typed{byName: composed(objs), secrets: map[string]*corev1.Secret{}, objectStores: map[string]*barmanv1.ObjectStore{}}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		switch gvk.String() {
		case "db.exam-results.io/v1alpha1, Kind=PostgresCluster":
			out.xr = u
		case "render.crossplane.io/v1beta1, Kind=Result":
			t.Errorf("the function returned a result: %v", u.Object)
		case "/v1, Kind=Secret":
			s := &corev1.Secret{}
			if decodeStrict(t, u, s) {
				out.secrets[s.Name] = s
			}
		case "postgresql.cnpg.io/v1, Kind=Cluster":
			c := &cnpgv1.Cluster{}
			if decodeStrict(t, u, c) {
				if out.cluster != nil {
					t.Errorf("two CloudNativePG Clusters")
				}
				out.cluster = c
			}
		case "postgresql.cnpg.io/v1, Kind=ScheduledBackup":
			b := &cnpgv1.ScheduledBackup{}
			if decodeStrict(t, u, b) {
				out.scheduledBackups = append(out.scheduledBackups, b)
			}
		case "barmancloud.cnpg.io/v1, Kind=ObjectStore":
			s := &barmanv1.ObjectStore{}
			if decodeStrict(t, u, s) {
				out.objectStores[s.Name] = s
			}
		default:
			if !schemaOnly[gvk.String()] {
				t.Errorf("%s %s: no Go type and no JSON-schema check for this kind", gvk, u.GetName())
			}
		}
	}
	if out.xr == nil {
		t.Fatal("crossplane render printed no XR")
	}
	return out
}

func TestEveryExampleRendersWithTheCompositionItSelectsAndNoOther(t *testing.T) {
	for xr, selected := range exampleXRs(t) {
		for provider, composition := range compositions {
			t.Run(filepath.Base(xr)+"/"+provider, func(t *testing.T) {
				objs, err := render(t, xr, composition, renderArgs{required: requiredResources})
				if provider != selected {
					if err == nil || !strings.Contains(err.Error(), `incorrect value for label "`+providerLabel+`"`) {
						t.Fatalf("render of %s with the %s composition: want refused by the composition selector, got %v", xr, provider, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				r := decodeAll(t, objs)
				if len(r.byName) == 0 {
					t.Fatal("nothing composed")
				}
				for name, u := range r.byName {
					if u.GetNamespace() != r.xr.GetNamespace() {
						t.Errorf("%s is in namespace %q, the XR in %q", name, u.GetNamespace(), r.xr.GetNamespace())
					}
				}
			})
		}
	}
}

func TestInClusterResourcesAreWhatCloudNativePGExpects(t *testing.T) {
	for xr, selected := range exampleXRs(t) {
		if selected != "in-cluster" {
			continue
		}
		t.Run(filepath.Base(xr), func(t *testing.T) {
			objs, err := render(t, xr, compositions["in-cluster"], renderArgs{required: requiredResources})
			if err != nil {
				t.Fatal(err)
			}
			r := decodeAll(t, objs)
			c := r.cluster
			if c == nil {
				t.Fatal("no CloudNativePG Cluster")
			}
			c.SetDefaults()
			conn := r.secrets[secretName(t, r.xr)]
			if conn == nil {
				t.Fatalf("no connection Secret %s", secretName(t, r.xr))
			}
			checkConnectionSecret(t, conn)

			// verify-full: the hosts the chart connects to are names on CloudNativePG's server certificate,
			// and the CA the status names is the one CloudNativePG signs it with.
			alt := c.GetClusterAltDNSNames()
			ns := c.Namespace
			for key, service := range map[string]string{"rw-host": c.GetServiceReadWriteName(), "ro-host": c.GetServiceReadOnlyName()} {
				host := string(conn.Data[key])
				if host != service+"."+ns+".svc" {
					t.Errorf("%s = %q, CloudNativePG's service is %s.%s.svc", key, host, service, ns)
				}
				if !slices.Contains(alt, host) {
					t.Errorf("%s %q is not on the server certificate (%v)", key, host, alt)
				}
			}
			caName, _, _ := unstructured.NestedString(r.xr.Object, "status", "caSecret", "name")
			caKey, _, _ := unstructured.NestedString(r.xr.Object, "status", "caSecret", "key")
			if caName != c.GetServerCASecretName() || caKey != "ca.crt" {
				t.Errorf("status.caSecret = %s/%s, CloudNativePG's server CA is %s/ca.crt", caName, caKey, c.GetServerCASecretName())
			}
			if want := requiredSecretData(t, c.GetServerCASecretName(), "ca.crt"); string(conn.Data["ca.crt"]) != want {
				t.Errorf("connection Secret ca.crt = %q, want the cluster CA %q", conn.Data["ca.crt"], want)
			}

			// The owner: bootstrap only, from a basic-auth Secret naming it; never a managed runtime role.
			var owner, ownerSecret string
			switch {
			case c.Spec.Bootstrap.InitDB != nil:
				owner, ownerSecret = c.Spec.Bootstrap.InitDB.Owner, c.Spec.Bootstrap.InitDB.Secret.Name
			case c.Spec.Bootstrap.Recovery != nil:
				owner, ownerSecret = c.Spec.Bootstrap.Recovery.Owner, c.Spec.Bootstrap.Recovery.Secret.Name
			default:
				t.Fatal("bootstrap is neither initdb nor recovery")
			}
			checkBasicAuth(t, r.secrets[ownerSecret], owner)
			if string(conn.Data["username"]) != owner || string(conn.Data["password"]) != string(r.secrets[ownerSecret].Data["password"]) {
				t.Errorf("connection Secret username/password are not the owner's (%s)", owner)
			}
			if _, isRuntime := runtimeRoles[owner]; isRuntime {
				t.Errorf("the owner %s is a runtime role", owner)
			}

			// The runtime roles: CloudNativePG managed login roles, members of the groups only.
			if c.Spec.Managed == nil {
				t.Fatal("no managed roles")
			}
			var got []string
			for _, role := range c.Spec.Managed.Roles {
				got = append(got, role.Name)
				group, known := runtimeRoles[role.Name]
				if !known {
					t.Errorf("unexpected managed role %s", role.Name)
					continue
				}
				if !role.Login || role.Superuser || role.CreateDB || role.CreateRole || role.Replication || role.BypassRLS {
					t.Errorf("%s: want login and nothing else, got %+v", role.Name, role)
				}
				if role.Ensure != cnpgv1.EnsurePresent || !slices.Equal(role.InRoles, []string{group}) {
					t.Errorf("%s: want present in [%s], got %s in %v", role.Name, group, role.Ensure, role.InRoles)
				}
				if role.PasswordSecret == nil {
					t.Errorf("%s has no password Secret", role.Name)
					continue
				}
				secret := r.secrets[role.PasswordSecret.Name]
				checkBasicAuth(t, secret, role.Name)
				prefix := map[string]string{"exam_app": "app", "exam_reader": "reader"}[role.Name]
				if secret != nil && (string(conn.Data[prefix+"-username"]) != role.Name ||
					string(conn.Data[prefix+"-password"]) != string(secret.Data["password"])) {
					t.Errorf("connection Secret %s-username/%s-password are not %s's", prefix, prefix, role.Name)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, []string{"exam_app", "exam_reader"}) {
				t.Errorf("managed roles %v, want exam_app and exam_reader", got)
			}

			// Backups and restores name objects that exist.
			for _, p := range c.Spec.Plugins {
				if name := p.Parameters["barmanObjectName"]; r.objectStores[name] == nil {
					t.Errorf("plugin %s archives to ObjectStore %q, which is not composed", p.Name, name)
				}
			}
			for _, ec := range c.Spec.ExternalClusters {
				if ec.PluginConfiguration == nil || r.objectStores[ec.PluginConfiguration.Parameters["barmanObjectName"]] == nil {
					t.Errorf("external cluster %s reads from an ObjectStore that is not composed", ec.Name)
				}
			}
			for _, b := range r.scheduledBackups {
				if b.Spec.Cluster.Name != c.Name || b.Spec.Method != cnpgv1.BackupMethodPlugin {
					t.Errorf("ScheduledBackup %s: cluster %s method %s", b.Name, b.Spec.Cluster.Name, b.Spec.Method)
				}
			}
		})
	}
}

func TestAWSReconcilesEndWithTheConnectionSecretTheChartReads(t *testing.T) {
	xr := filepath.Join(root, "examples", "prod-aws.yaml")
	ready := func(u *unstructured.Unstructured, address string) *unstructured.Unstructured {
		u = u.DeepCopy()
		status := map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
		if address != "" {
			status["atProvider"] = map[string]any{"address": address, "port": int64(5432)}
		}
		u.Object["status"] = status
		return u
	}
	// 1. Nothing exists yet: no replicas, no Secret.
	objs, err := render(t, xr, compositions["aws"], renderArgs{required: requiredResources})
	if err != nil {
		t.Fatal(err)
	}
	first := decodeAll(t, objs)
	if _, ok := first.byName["connection-secret"]; ok {
		t.Error("connection Secret before the primary has an address")
	}
	// 2. The primary is ready with its address: replicas and the Secret follow.
	var observed []*unstructured.Unstructured
	for name, u := range first.byName {
		address := ""
		if name == "primary" {
			address = "exam-results-db.abc123.eu-west-1.rds.amazonaws.com"
		}
		observed = append(observed, ready(u, address))
	}
	objs, err = render(t, xr, compositions["aws"], renderArgs{required: requiredResources, observed: writeObserved(t, observed...)})
	if err != nil {
		t.Fatal(err)
	}
	second := decodeAll(t, objs)
	for _, want := range []string{"replica-1", "replica-2", "connection-secret"} {
		if second.byName[want] == nil {
			t.Errorf("second reconcile composed %v, want %s", names(second.byName), want)
		}
	}
	// 3. Replicas ready: ro-host moves to replica 1.
	for _, name := range []string{"replica-1", "replica-2", "connection-secret"} {
		if u := second.byName[name]; u != nil {
			observed = append(observed, ready(u, "exam-results-db-"+name+".abc123.eu-west-1.rds.amazonaws.com"))
		}
	}
	objs, err = render(t, xr, compositions["aws"], renderArgs{required: requiredResources, observed: writeObserved(t, observed...)})
	if err != nil {
		t.Fatal(err)
	}
	third := decodeAll(t, objs)
	conn := third.secrets[secretName(t, third.xr)]
	if conn == nil {
		t.Fatal("no connection Secret")
	}
	checkConnectionSecret(t, conn)
	if got := string(conn.Data["ro-host"]); got != "exam-results-db-replica-1.abc123.eu-west-1.rds.amazonaws.com" {
		t.Errorf("ro-host = %s", got)
	}
	for prefix, role := range map[string]string{"app": "exam_app", "reader": "exam_reader"} {
		secret := third.secrets["exam-results-db-"+prefix+"-role"]
		checkBasicAuth(t, secret, role)
		if secret != nil && string(conn.Data[prefix+"-password"]) != string(secret.Data["password"]) {
			t.Errorf("%s-password is not the %s role Secret's", prefix, role)
		}
	}
	bundle, _, _ := unstructured.NestedString(third.xr.Object, "status", "caSecret", "name")
	if want := requiredSecretData(t, bundle, "ca.crt"); string(conn.Data["ca.crt"]) != want {
		t.Errorf("ca.crt = %q, want the RDS bundle from Secret %s", conn.Data["ca.crt"], bundle)
	}
	if s := third.xr.Object["status"].(map[string]any); s["readyInstances"] != int64(3) && s["readyInstances"] != float64(3) {
		t.Errorf("readyInstances = %v, want 3", s["readyInstances"])
	}
}

func TestTheTemplateRefusesWhatTheXRDWouldHaveRejected(t *testing.T) {
	u := readObject(t, filepath.Join(root, "examples", "dev.yaml"))
	if err := unstructured.SetNestedField(u.Object, int64(1), "spec", "instances"); err != nil {
		t.Fatal(err)
	}
	path := writeObserved(t, u)
	_, err := render(t, path, compositions["in-cluster"], renderArgs{})
	if err == nil || !strings.Contains(err.Error(), "spec.instances must be at least 2") {
		t.Fatalf("want the function's fatal result about spec.instances, got %v", err)
	}
}

func TestTheOnDemandBackupIsACloudNativePGBackup(t *testing.T) {
	u := readObject(t, filepath.Join(root, "operations", "backup-now.yaml"))
	b := &cnpgv1.Backup{}
	if decodeStrict(t, u, b) && (b.Spec.Method != cnpgv1.BackupMethodPlugin || b.Spec.Cluster.Name != "exam-results-db") {
		t.Errorf("backup-now: method %s cluster %s", b.Spec.Method, b.Spec.Cluster.Name)
	}
}

func secretName(t *testing.T, xr *unstructured.Unstructured) string {
	t.Helper()
	name, _, _ := unstructured.NestedString(xr.Object, "status", "connectionSecret")
	if name == "" {
		t.Fatal("XR status names no connection Secret")
	}
	return name
}

func checkConnectionSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	var keys []string
	for k, v := range s.Data {
		keys = append(keys, k)
		if len(v) == 0 {
			t.Errorf("connection Secret key %s is empty", k)
		}
	}
	sort.Strings(keys)
	if want := connectionKeys(t); !slices.Equal(keys, want) {
		t.Errorf("connection Secret keys %v, want %v", keys, want)
	}
}

// checkBasicAuth: CloudNativePG reads a role's password from a kubernetes.io/basic-auth Secret
// whose username is the role.
func checkBasicAuth(t *testing.T, s *corev1.Secret, role string) {
	t.Helper()
	if s == nil {
		t.Errorf("no Secret for role %s", role)
		return
	}
	if s.Type != corev1.SecretTypeBasicAuth || string(s.Data[corev1.BasicAuthUsernameKey]) != role || len(s.Data[corev1.BasicAuthPasswordKey]) < 32 {
		t.Errorf("Secret %s: type %s username %q password of %d characters; want basic-auth for %s with 32+",
			s.Name, s.Type, s.Data[corev1.BasicAuthUsernameKey], len(s.Data[corev1.BasicAuthPasswordKey]), role)
	}
}

// requiredSecretData is a key of a Secret in testdata/required-resources.yaml, decoded.
func requiredSecretData(t *testing.T, name, key string) string {
	t.Helper()
	raw, err := os.ReadFile(requiredResources)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range splitDocuments(t, raw) {
		if u.GetName() == name {
			s := &corev1.Secret{}
			decodeStrict(t, u, s)
			return string(s.Data[key])
		}
	}
	t.Fatalf("no Secret %s in %s", name, requiredResources)
	return ""
}

func TestStrictDecodingRejectsAFieldCloudNativePGDoesNotHave(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": map[string]any{"name": "x"},
		"spec": map[string]any{"instances": int64(2), "enableSuperUserAccess": false}, // the field is enableSuperuserAccess
	}}
	err := strictDecode(u, &cnpgv1.Cluster{})
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.enableSuperUserAccess"`) {
		t.Fatalf("a misspelt Cluster field: want an unknown-field error, got %v", err)
	}
}
