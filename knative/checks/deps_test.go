package checks

import (
	_ "github.com/google/go-cmp/cmp"
	_ "knative.dev/pkg/apis"
	_ "knative.dev/serving/pkg/apis/config"
	_ "knative.dev/serving/pkg/apis/serving/v1"
	_ "knative.dev/serving/pkg/autoscaler/config"
	_ "sigs.k8s.io/yaml"
)
