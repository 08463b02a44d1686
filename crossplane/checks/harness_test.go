package checks

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var (
	// root is crossplane/ (the module root); the tests run in crossplane/checks.
	root, _ = filepath.Abs("..")

	crossplaneBin string // the crossplane CLI, built from crossplane/go.mod's pin
	functionAddr  string // where the composition function listens
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if crossplaneBin, err = tool("crank"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fn, err := tool("gotemplating")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startFunction(fn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// tool builds (or finds in Go's build cache) one of go.mod's tools and returns its path.
func tool(name string) (string, error) {
	cmd := exec.Command("go", "tool", "-n", name)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s: %v\n%s", name, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// startFunction runs the function with --insecure on a free 127.0.0.1 port and waits until it
// accepts connections.
func startFunction(bin string) (func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	functionAddr = l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--insecure", "--address", functionAddr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", functionAddr); err == nil {
			c.Close()
			return stop, nil
		}
	}
	stop()
	return nil, fmt.Errorf("the function did not listen on %s within 30s", functionAddr)
}

// renderArgs are the extra `crossplane render` arguments of one render.
type renderArgs struct {
	observed string // --observed-resources file
	required string // --required-resources file
	noXRD    bool   // skip the XRD's defaulting (to reach the template's own checks)
}

// render runs `crossplane render XR COMPOSITION crossplane/functions.yaml --xrd definition.yaml`
// with the Development runtime pointed at the local function. It returns the objects rendered
// (the XR first, as crossplane prints it), or render's error output.
func render(t *testing.T, xr, composition string, a renderArgs) ([]*unstructured.Unstructured, error) {
	t.Helper()
	args := []string{"render", xr, composition, filepath.Join(root, "functions.yaml"),
		"--function-annotations", "render.crossplane.io/runtime=Development",
		"--function-annotations", "render.crossplane.io/runtime-development-target=" + functionAddr,
		"--include-function-results", "--timeout", "2m"}
	if !a.noXRD {
		args = append(args, "--xrd", filepath.Join(root, "apis", "postgrescluster", "definition.yaml"))
	}
	if a.observed != "" {
		args = append(args, "--observed-resources", a.observed)
	}
	if a.required != "" {
		args = append(args, "--required-resources", a.required)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, crossplaneBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("crossplane %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return splitDocuments(t, stdout.Bytes()), nil
}

func splitDocuments(t *testing.T, out []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		doc = bytes.TrimPrefix(bytes.TrimSpace(doc), []byte("---"))
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("crossplane render printed something that is not YAML: %v\n%s", err, doc)
		}
		objs = append(objs, u)
	}
	return objs
}

// composed is a render's output by Crossplane's composition-resource-name annotation.
func composed(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if name := o.GetAnnotations()["crossplane.io/composition-resource-name"]; name != "" {
			m[name] = o
		}
	}
	return m
}

func names(m map[string]*unstructured.Unstructured) []string {
	var n []string
	for k := range m {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// writeObserved writes objects for --observed-resources.
func writeObserved(t *testing.T, objs ...*unstructured.Unstructured) string {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	path := filepath.Join(t.TempDir(), "observed.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
