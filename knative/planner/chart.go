package planner

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/networking/pkg/apis/networking"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
	"knative.dev/serving/pkg/autoscaler/scaling"
	kparesources "knative.dev/serving/pkg/reconciler/autoscaling/kpa/resources"
	"sigs.k8s.io/yaml"
)

// Function is one rendered Knative Service as the autoscaler sees it: the
// PodAutoscaler Knative derives from its revision template and the Decider
// the KPA builds from that PodAutoscaler and config-autoscaler.
type Function struct {
	Name                 string
	Annotations          map[string]string
	ContainerConcurrency int64
	TimeoutSeconds       int64
	PoolSize             int
	ReadFallback         bool
	Access               string  // "read" or "write"
	CPURequest           float64 // cores (resources.requests.cpu)

	PA      *autoscalingv1alpha1.PodAutoscaler
	Decider *scaling.Decider
	// Scale bounds as the KPA applies them (PodAutoscaler.ScaleBounds) and
	// the initial scale (kpa resources.GetInitialScale).
	MinScale, MaxScale, InitialScale int32
}

// Pooler is the PgBouncer and PostgreSQL side of the rendered chart.
type Pooler struct {
	Replicas      int // PgBouncer pods
	MaxClientConn int // per PgBouncer pod
	// Server connections per PgBouncer pod and logical database
	// (max_db_connections = pool_size + reserve_pool_size).
	ReadOnlyServerConns, ReadWriteServerConns int
	// PostgreSQL's max_connections (values: postgres.maxConnections; the
	// chart does not render it into any object).
	MaxConnections int
}

// Release is everything the planner takes from one render of the chart.
type Release struct {
	Functions map[string]*Function
	Pooler    Pooler
	Sets      []string // the --set expressions the render used
}

// RepoRoot finds the repository root (the directory with knative/helm_template.py).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "knative", "helm_template.py")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("knative/helm_template.py not found above the working directory")
		}
		dir = parent
	}
}

// Python returns the interpreter that has the Helm SDK: $PLANNER_PYTHON,
// else the project's virtualenv ($VENV or .venv), else python3.
func Python(root string) string {
	if p := os.Getenv("PLANNER_PYTHON"); p != "" {
		return p
	}
	venv := os.Getenv("VENV")
	if venv == "" {
		venv = ".venv"
	}
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(root, venv)
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "python")); err == nil {
		return filepath.Join(venv, "bin", "python")
	}
	return "python3"
}

// Render runs knative/helm_template.py (the Helm SDK) with the given values
// files and --set expressions and returns the manifests.
func Render(ctx context.Context, root string, valuesFiles, sets []string) ([]byte, error) {
	args := []string{filepath.Join(root, "knative", "helm_template.py")}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, Python(root), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rendering the chart (%s): %v: %s (run `make deps` for the Helm SDK)",
			strings.Join(cmd.Args, " "), err, lastLine(stderr.String()))
	}
	return out, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// LoadRelease renders the chart and reads the Knative Services, PgBouncer's
// configuration and replicas, and PostgreSQL's max_connections.
func LoadRelease(ctx context.Context, root string, valuesFiles, sets []string, as *autoscalerconfig.Config) (*Release, error) {
	manifests, err := Render(ctx, root, valuesFiles, sets)
	if err != nil {
		return nil, err
	}
	rel, err := ParseRelease(manifests, as)
	if err != nil {
		return nil, err
	}
	rel.Sets = sets
	rel.Pooler.MaxConnections, err = maxConnections(root, valuesFiles, sets)
	return rel, err
}

// ParseRelease reads rendered manifests.
func ParseRelease(manifests []byte, as *autoscalerconfig.Config) (*Release, error) {
	rel := &Release{Functions: map[string]*Function{}}
	for _, doc := range strings.Split(string(manifests), "\n---") {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &head) != nil || head.Kind == "" {
			continue
		}
		switch {
		case head.APIVersion == "serving.knative.dev/v1" && head.Kind == "Service":
			var svc servingv1.Service
			if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
				return nil, fmt.Errorf("Knative Service %s: %w", head.Metadata.Name, err)
			}
			fn, err := functionFromService(&svc, as)
			if err != nil {
				return nil, err
			}
			rel.Functions[fn.Name] = fn
		case head.Kind == "ConfigMap" && head.Metadata.Name == "pgbouncer-config":
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				return nil, err
			}
			if err := parsePgBouncer(cm.Data["render-config.sh"], &rel.Pooler); err != nil {
				return nil, err
			}
		case head.Kind == "Deployment" && head.Metadata.Name == "pgbouncer":
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				return nil, err
			}
			rel.Pooler.Replicas = 1
			if d.Spec.Replicas != nil {
				rel.Pooler.Replicas = int(*d.Spec.Replicas)
			}
		}
	}
	if len(rel.Functions) == 0 {
		return nil, fmt.Errorf("the render has no Knative Service")
	}
	if rel.Pooler.MaxClientConn == 0 || rel.Pooler.Replicas == 0 {
		return nil, fmt.Errorf("the render has no PgBouncer configuration (pgbouncer-config, Deployment pgbouncer)")
	}
	return rel, nil
}

// functionFromService builds the PodAutoscaler the way Knative does for a
// revision of this template (the revision carries the template's
// annotations and containerConcurrency; an active route makes it
// reachable) and the Decider from it with kpa resources.MakeDecider.
func functionFromService(svc *servingv1.Service, as *autoscalerconfig.Config) (*Function, error) {
	tmpl := svc.Spec.Template
	fn := &Function{
		Name:                 svc.Name,
		Annotations:          tmpl.Annotations,
		ContainerConcurrency: tmpl.Spec.GetContainerConcurrency(),
		Access:               tmpl.Labels["exam-results/access"],
	}
	if tmpl.Spec.TimeoutSeconds != nil {
		fn.TimeoutSeconds = *tmpl.Spec.TimeoutSeconds
	} else {
		fn.TimeoutSeconds = 300 // Knative's revision-timeout-seconds default
	}
	if len(tmpl.Spec.Containers) == 0 {
		return nil, fmt.Errorf("Knative Service %s has no container", svc.Name)
	}
	if q, ok := tmpl.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; ok {
		fn.CPURequest = q.AsApproximateFloat64()
	}
	for _, env := range tmpl.Spec.Containers[0].Env {
		switch env.Name {
		case "DATABASE_POOL_SIZE":
			n, err := strconv.Atoi(env.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: DATABASE_POOL_SIZE %q: %w", svc.Name, env.Value, err)
			}
			fn.PoolSize = n
		case "READ_FALLBACK_DATABASE_URL":
			fn.ReadFallback = true
		}
	}
	fn.PA = &autoscalingv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{
			Name:        svc.Name,
			Namespace:   "exam-results",
			Annotations: tmpl.Annotations,
		},
		Spec: autoscalingv1alpha1.PodAutoscalerSpec{
			ContainerConcurrency: fn.ContainerConcurrency,
			ScaleTargetRef: corev1.ObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Name: svc.Name + "-deployment",
			},
			ProtocolType: networking.ProtocolHTTP1,
			Reachability: autoscalingv1alpha1.ReachabilityReachable,
		},
	}
	if err := fn.PA.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: Knative refuses the autoscaling annotations: %v", svc.Name, err)
	}
	fn.Decider = kparesources.MakeDecider(fn.PA, as)
	fn.MinScale, fn.MaxScale = fn.PA.ScaleBounds(as)
	fn.InitialScale = kparesources.GetInitialScale(as, fn.PA)
	return fn, nil
}

var iniInt = regexp.MustCompile(`(?m)^\s*([a-z_]+)\s*=\s*(\d+)\s*$`)
var dbLine = regexp.MustCompile(`(?m)^\s*(\w+)\s*=\s*host=.*\bmax_db_connections=(\d+)`)

func parsePgBouncer(script string, p *Pooler) error {
	for _, m := range iniInt.FindAllStringSubmatch(script, -1) {
		if m[1] == "max_client_conn" {
			p.MaxClientConn, _ = strconv.Atoi(m[2])
		}
	}
	for _, m := range dbLine.FindAllStringSubmatch(script, -1) {
		n, _ := strconv.Atoi(m[2])
		if strings.HasSuffix(m[1], "_ro") {
			p.ReadOnlyServerConns = n
		} else {
			p.ReadWriteServerConns = n
		}
	}
	if p.MaxClientConn == 0 || p.ReadOnlyServerConns == 0 {
		return fmt.Errorf("pgbouncer-config: max_client_conn or the read-only database's max_db_connections not found")
	}
	return nil
}

// maxConnections reads postgres.maxConnections from the chart's values,
// the given values files and --set expressions, in Helm's order.
func maxConnections(root string, valuesFiles, sets []string) (int, error) {
	files := append([]string{filepath.Join(root, "knative", "exam-results", "values.yaml")}, valuesFiles...)
	value := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var v struct {
			Postgres struct {
				MaxConnections *int `json:"maxConnections"`
			} `json:"postgres"`
		}
		if err := yaml.Unmarshal(raw, &v); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if v.Postgres.MaxConnections != nil {
			value = *v.Postgres.MaxConnections
		}
	}
	for _, s := range sets {
		for _, part := range splitSet(s) {
			if k, v, ok := strings.Cut(part, "="); ok && k == "postgres.maxConnections" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return 0, fmt.Errorf("--set %s: %w", part, err)
				}
				value = n
			}
		}
	}
	return value, nil
}

func splitSet(s string) []string { return strings.Split(s, ",") }
