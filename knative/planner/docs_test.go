package planner

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docOutput returns the console output docs/scaling.md shows for a command,
// up to the closing fence.
func docOutput(t *testing.T, doc, command string) []string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "\n$ "+command+"\n")
	if !ok {
		t.Fatalf("docs/scaling.md shows no `$ %s`", command)
	}
	block, _, _ := strings.Cut(after, "```")
	return strings.Split(strings.TrimRight(block, "\n"), "\n")
}

// The plans pasted into docs/scaling.md are what the planner prints today
// (all but the last line, which has the run's wall time).
func TestScalingDocShowsTodaysPlans(t *testing.T) {
	f := setup(t)
	raw, err := os.ReadFile(filepath.Join(f.root, "docs", "scaling.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	overlay := "knative/planner/results-day-values.yaml"
	for _, tc := range []struct {
		command string
		values  []string
		image   string // the chart of the same run that the doc embeds
	}{
		{"make plan", nil, "scaling-plan.png"},
		{`make plan PLAN_ARGS="-f ` + overlay + ` -out /tmp/plan-rd -png docs/scaling-plan-results-day.png"`,
			[]string{filepath.Join(f.root, overlay)}, "scaling-plan-results-day.png"},
	} {
		shown := docOutput(t, doc, tc.command)
		res, rel := f.plan(t, tc.values, nil)
		prof := res.Profile
		var out bytes.Buffer
		out.WriteString(Header(prof, f.capacity, f.cluster) + "\n")
		PrintSummary(&out, res, rel, DefaultObjective)
		want := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(shown) != len(want)+1 || !strings.HasPrefix(shown[len(shown)-1], "wrote ") {
			t.Errorf("%s: the doc shows %d lines, the planner prints %d and a wrote line", tc.command, len(shown), len(want))
			continue
		}
		for i := range want {
			if shown[i] != want[i] {
				t.Errorf("%s, line %d:\n doc: %s\n now: %s", tc.command, i+1, shown[i], want[i])
			}
		}
		img := filepath.Join(t.TempDir(), "plan.png")
		if err := WritePNG(img, res, DefaultObjective); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(img)
		embedded, err := os.ReadFile(filepath.Join(f.root, "docs", tc.image))
		if err != nil || !bytes.Equal(got, embedded) {
			t.Errorf("docs/%s is not the chart of %s (%v); redraw it with -png docs/%s", tc.image, tc.command, err, tc.image)
		}
	}
}

// The --set line the doc shows from `make plan-recommend` is the values
// file shipped for results day.
func TestResultsDayValuesAreTheDocumentedRecommendation(t *testing.T) {
	f := setup(t)
	raw, err := os.ReadFile(filepath.Join(f.root, "docs", "scaling.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := docOutput(t, string(raw), "make plan-recommend | tail -4")
	setLine := strings.TrimSpace(shown[len(shown)-1])
	rel := f.release(t, []string{filepath.Join(f.root, "knative", "planner", "results-day-values.yaml")}, nil)
	key, _ := ValuesKey(f.root, "get-result")
	want := "--set " + strings.Join(SetLine(key, KnobsOf(rel.Functions["get-result"])), ",")
	if setLine != want {
		t.Errorf("docs/scaling.md recommends\n %s\nresults-day-values.yaml renders\n %s", setLine, want)
	}
}
