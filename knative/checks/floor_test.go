package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The Knative Serving these checks run is the floor Chart.yaml states:
// module knative.dev/serving v0.N.x is Knative Serving 1.(N-27).
func TestTheCheckedKnativeServingIsTheStatedFloor(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(knativeDir(t), "exam-results", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	floor := chart.Annotations["exam-results/knative-serving-version"]
	gomod, err := os.ReadFile(filepath.Join(knativeDir(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`(?m)^\s*knative\.dev/serving (v\S+)`).FindSubmatch(gomod)
	if match == nil {
		t.Fatal("go.mod does not require knative.dev/serving")
	}
	version := string(match[1])
	parts := strings.Split(strings.TrimPrefix(version, "v"), ".")
	if len(parts) < 2 || parts[0] != "0" {
		t.Fatalf("knative.dev/serving version %q", version)
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(">=1.%d", minor-27); floor != want {
		t.Errorf("Chart.yaml states Knative Serving %q; the checks run knative.dev/serving %s, i.e. %q", floor, version, want)
	}
}
