package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// Field managers: the chart's releases are applied as Helm 4 applies them
// (server-side, manager "helm", conflicts not forced); "cd" is a change made
// outside the chart.
const (
	helmManager = "helm"
	cdManager   = "cd"
)

// repoRoot is the repository's top directory (knative/apiserver/../..).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// python is the interpreter with helm-python-sdk: $PYTHON, else the
// repository's .venv (what `make deps` creates), else python3.
func python() string {
	if p := os.Getenv("PYTHON"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	venv := filepath.Join(repoRoot(), ".venv", "bin", "python")
	if _, err := os.Stat(venv); err == nil {
		return venv
	}
	return "python3"
}

// runPython runs a repository script and returns its stdout.
func runPython(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(python(), args...)
	cmd.Dir = repoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", python(), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// decode splits a YAML stream into objects, dropping empty documents.
func decode(t testing.TB, stream string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeStream(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeStream(r io.Reader) ([]*unstructured.Unstructured, error) {
	d := k8syaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

func decodeFile(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := decodeStream(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

func ref(o *unstructured.Unstructured) string {
	s := o.GetKind() + " " + o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		s = o.GetKind() + " " + ns + "/" + o.GetName()
	}
	return s
}

// resource is the dynamic client of an object's kind, in namespace ns when
// the kind is namespaced and the object names none.
func resource(o *unstructured.Unstructured, ns string) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	mapping, err := cluster.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		cluster.mapper.Reset() // a CRD installed since the last discovery
		mapping, err = cluster.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, err
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return cluster.dyn.Resource(mapping.Resource), nil
	}
	if o.GetNamespace() == "" {
		o.SetNamespace(ns)
	}
	return cluster.dyn.Resource(mapping.Resource).Namespace(o.GetNamespace()), nil
}

// apply is one server-side apply of obj by manager.
func apply(ctx context.Context, obj *unstructured.Unstructured, ns, manager string, force bool) (*unstructured.Unstructured, error) {
	obj = obj.DeepCopy()
	ri, err := resource(obj, ns)
	if err != nil {
		return nil, err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: manager, Force: &force})
}

// create is `kubectl create` (for objects with metadata.generateName, which
// apply cannot name).
func create(ctx context.Context, obj *unstructured.Unstructured, ns string) (*unstructured.Unstructured, error) {
	obj = obj.DeepCopy()
	ri, err := resource(obj, ns)
	if err != nil {
		return nil, err
	}
	return ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: "kubectl"})
}

func remove(ctx context.Context, obj *unstructured.Unstructured, ns string) error {
	obj = obj.DeepCopy()
	ri, err := resource(obj, ns)
	if err != nil {
		return err
	}
	err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// installOrder is Helm's order of kinds (pkg/release/util/kind_sorter.go);
// other kinds come after these.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
	"RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
	"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}

func sortForInstall(objs []*unstructured.Unstructured) {
	rank := func(o *unstructured.Unstructured) int {
		if i := slices.Index(installOrder, o.GetKind()); i >= 0 {
			return i
		}
		return len(installOrder)
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
}

// hook is the value of the helm.sh/hook annotation ("" for release objects).
func hook(o *unstructured.Unstructured) string { return o.GetAnnotations()["helm.sh/hook"] }

// release is one state of a Helm release in a namespace: what the last
// install/upgrade applied, so that the next one removes what it no longer
// renders, as Helm does.
type helmRelease struct {
	namespace string
	objects   map[string]*unstructured.Unstructured
}

func key(o *unstructured.Unstructured) string {
	return o.GetAPIVersion() + "/" + o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// upgrade applies a render as `helm upgrade --install` does: the
// pre-install/pre-upgrade hooks first (deleted and created again, their
// delete policy being before-hook-creation), then the release's objects in
// Helm's kind order with server-side apply, then it deletes the objects the
// previous render had and this one lacks; `helm test` hooks last. It returns
// every rejection with the server's message.
func (r *helmRelease) upgrade(ctx context.Context, objs []*unstructured.Unstructured) (applied int, rejected []string) {
	var hooks, manifests, tests []*unstructured.Unstructured
	for _, o := range objs {
		switch h := hook(o); {
		case h == "":
			manifests = append(manifests, o)
		case strings.Contains(h, "test"):
			tests = append(tests, o)
		default:
			hooks = append(hooks, o)
		}
	}
	for _, group := range [][]*unstructured.Unstructured{hooks, manifests, tests} {
		sortForInstall(group)
	}
	try := func(o *unstructured.Unstructured, err error) {
		if err != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %v", ref(o), err))
			return
		}
		applied++
	}
	recreate := func(o *unstructured.Unstructured) {
		if err := remove(ctx, o, r.namespace); err != nil {
			try(o, err)
			return
		}
		_, err := apply(ctx, o, r.namespace, helmManager, false)
		try(o, err)
	}
	for _, o := range objs {
		// Namespaces the release only refers to (postgres.namespace, the
		// dashboards' namespace) exist in the cluster before it.
		if o.GetNamespace() != "" && o.GetNamespace() != r.namespace {
			if err := ensureNamespace(ctx, o.GetNamespace()); err != nil {
				rejected = append(rejected, fmt.Sprintf("namespace %s: %v", o.GetNamespace(), err))
			}
		}
	}
	for _, o := range hooks {
		recreate(o)
	}
	next := map[string]*unstructured.Unstructured{}
	for _, o := range manifests {
		live, err := apply(ctx, o, r.namespace, helmManager, false)
		try(o, err)
		if err == nil {
			next[key(live)] = live
		}
	}
	for k, o := range r.objects {
		if _, kept := next[k]; !kept {
			if err := remove(ctx, o, r.namespace); err != nil {
				rejected = append(rejected, fmt.Sprintf("deleting %s: %v", ref(o), err))
			}
		}
	}
	r.objects = next
	for _, o := range tests {
		recreate(o)
	}
	return applied, rejected
}

var (
	listAll = metav1.ListOptions{}
	getOpts = metav1.GetOptions{}
)
