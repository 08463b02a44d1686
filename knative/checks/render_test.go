package checks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

// knativeDir is the repository's knative/ directory (the parent of checks/).
func knativeDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// python is the interpreter with helm-python-sdk: $PYTHON, else the
// repository's .venv (what `make deps` creates), else python3.
func python(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PYTHON"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	venv := filepath.Join(filepath.Dir(knativeDir(t)), ".venv", "bin", "python")
	if _, err := os.Stat(venv); err == nil {
		return venv
	}
	return "python3"
}

// release is one `helm template` input: value files (relative to the chart)
// and --set expressions, applied in that order.
type release struct {
	files []string
	sets  []string
}

func (r release) with(sets ...string) release {
	return release{files: r.files, sets: append(append([]string{}, r.sets...), sets...)}
}

// renderErr renders the chart; a refused render returns Helm's message.
func renderErr(t testing.TB, r release) (string, error) {
	t.Helper()
	args := []string{filepath.Join(knativeDir(t), "helm_template.py")}
	for _, f := range r.files {
		args = append(args, "-f", filepath.Join(knativeDir(t), "exam-results", f))
	}
	for _, s := range r.sets {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(python(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 {
			return "", errors.New(helmError(stderr.String()))
		}
		t.Fatalf("%s %s: %v\n%s", python(t), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmError is the "Error: ..." part of the helper's stderr (Helm's chart
// loader also logs INFO lines there).
func helmError(stderr string) string {
	if i := strings.Index(stderr, "Error: "); i >= 0 {
		stderr = stderr[i:]
	}
	if i := strings.Index(stderr, "\n20"); i >= 0 { // a following log line
		stderr = stderr[:i]
	}
	return strings.TrimSpace(stderr)
}

func render(t testing.TB, r release) string {
	t.Helper()
	out, err := renderErr(t, r)
	if err != nil {
		t.Fatalf("render %v: %v", r, err)
	}
	return out
}

// services decodes every serving.knative.dev/v1 Service of a render, by name,
// refusing unknown fields.
func services(t testing.TB, manifests string) map[string]*v1.Service {
	t.Helper()
	return servicesWithJSON(t, manifests, nil)
}

// servicesWithJSON is services, also filling manifestsJSON (if not nil) with
// each Service's manifest as JSON, by name.
func servicesWithJSON(t testing.TB, manifests string, manifestsJSON map[string][]byte) map[string]*v1.Service {
	t.Helper()
	out := map[string]*v1.Service{}
	reader := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(head.APIVersion, "serving.knative.dev/") {
			continue
		}
		if head.APIVersion != "serving.knative.dev/v1" || head.Kind != "Service" {
			t.Fatalf("the chart renders %s %s, which these checks do not decode", head.APIVersion, head.Kind)
		}
		svc := &v1.Service{}
		if err := yaml.UnmarshalStrict(doc, svc); err != nil {
			t.Fatalf("decoding a Knative Service: %v\n%s", err, doc)
		}
		out[svc.Name] = svc
		if manifestsJSON != nil {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatal(err)
			}
			manifestsJSON[svc.Name] = js
		}
	}
	return out
}

// manifestFunctions is the list of functions from functions.yaml.
type manifestFunction struct {
	Name   string `json:"name"`
	Key    string `json:"key"`
	Access string `json:"access"`
}

func functions(t testing.TB) []manifestFunction {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(knativeDir(t), "exam-results", "functions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Functions []manifestFunction `json:"functions"`
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Functions) == 0 {
		t.Fatal("functions.yaml lists no function")
	}
	return m.Functions
}

func (r release) String() string {
	return fmt.Sprintf("-f %v --set %v", r.files, r.sets)
}
