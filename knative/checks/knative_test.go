package checks

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"knative.dev/pkg/apis"
	servingconfig "knative.dev/serving/pkg/apis/config"
	v1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

// The ConfigMaps Knative Serving ships (config/core/configmaps in the
// knative.dev/serving module): their data is only the `_example` block, so
// the stores load the built-in defaults, exactly as a fresh install does.
var shippedConfigMaps = []string{"autoscaler.yaml", "defaults.yaml", "features.yaml"}

var (
	servingDirOnce sync.Once
	servingDir     string
	servingDirErr  error
)

// knativeServingDir is where the Go toolchain keeps the pinned knative.dev/serving module.
func knativeServingDir(t testing.TB) string {
	t.Helper()
	servingDirOnce.Do(func() {
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-m", "-f", "{{.Dir}}", "knative.dev/serving")
		cmd.Dir = knativeDir(t)
		out, err := cmd.Output()
		servingDir, servingDirErr = strings.TrimSpace(string(out)), err
	})
	if servingDirErr != nil || servingDir == "" {
		t.Fatalf("locating the knative.dev/serving module: %v", servingDirErr)
	}
	return servingDir
}

// shippedConfigMap reads one of Knative's shipped ConfigMaps; extra entries
// are set in its data, as an operator would edit it.
func shippedConfigMap(t testing.TB, file string, extra map[string]string) *corev1.ConfigMap {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(knativeServingDir(t), "config", "core", "configmaps", file))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := yaml.Unmarshal(data, cm); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for k, v := range extra {
		cm.Data[k] = v
	}
	return cm
}

type testLogger struct{ t testing.TB }

func (l testLogger) Debugf(string, ...interface{})     {}
func (l testLogger) Infof(string, ...interface{})      {}
func (l testLogger) Errorf(f string, a ...interface{}) { l.t.Errorf(f, a...) }
func (l testLogger) Fatalf(f string, a ...interface{}) { l.t.Fatalf(f, a...) }

// knativeContext is the context Knative's webhook validates in: the config
// store (knative.dev/serving/pkg/apis/config) loaded with the shipped
// ConfigMaps. autoscaler holds config-autoscaler entries an operator set.
func knativeContext(t testing.TB, autoscaler map[string]string) context.Context {
	t.Helper()
	store := servingconfig.NewStore(testLogger{t})
	for _, file := range shippedConfigMaps {
		var extra map[string]string
		if file == "autoscaler.yaml" {
			extra = autoscaler
		}
		store.OnConfigChanged(shippedConfigMap(t, file, extra))
	}
	cfg := store.Load()
	if cfg.Defaults == nil || cfg.Features == nil || cfg.Autoscaler == nil {
		t.Fatalf("the config store is missing a config: %+v", cfg)
	}
	return store.ToContext(context.Background())
}

// helmUpgrade is the object a `helm upgrade` leaves for the webhook: Helm
// (v3) patches a custom resource with a JSON merge patch from the previous
// release's manifest to the new one, applied to the live object, so fields the
// webhook defaulted and neither manifest names stay as they are.
func helmUpgrade(t testing.TB, live *v1.Service, oldManifest, newManifest []byte) *v1.Service {
	t.Helper()
	patch, err := jsonpatch.CreateMergePatch(oldManifest, newManifest)
	if err != nil {
		t.Fatal(err)
	}
	current, err := json.Marshal(live)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := jsonpatch.MergePatch(current, patch)
	if err != nil {
		t.Fatal(err)
	}
	out := &v1.Service{}
	if err := json.Unmarshal(merged, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// admitCreate is what the webhook does with a new Service: default it, then validate it.
func admitCreate(ctx context.Context, svc *v1.Service) (*v1.Service, *apis.FieldError) {
	svc = svc.DeepCopy()
	ctx = apis.WithinCreate(ctx)
	svc.SetDefaults(ctx)
	return svc, svc.Validate(ctx)
}

// admitUpdate is what the webhook does with a changed Service: default and
// validate it against the stored (defaulted) object it replaces.
func admitUpdate(ctx context.Context, old, svc *v1.Service) (*v1.Service, *apis.FieldError) {
	svc = svc.DeepCopy()
	ctx = apis.WithinUpdate(ctx, old)
	svc.SetDefaults(ctx)
	return svc, svc.Validate(ctx)
}
