// Command gotemplating serves the one composition function step the PostgresCluster pipelines
// run (function-go-templating's GoTemplate input, Inline source) for `crossplane render`'s
// Development runtime: crossplane/checks starts it on a free 127.0.0.1 port with --insecure.
//
// It stands in for function-go-templating, whose module the Go proxy does not serve (every version
// answers 403 "not available"), so that the real `crossplane render` can run the compositions.
// What it shares with function-go-templating v0.12.2 is library code at the same versions:
// text/template, sprig v3 without env/expandenv, the request turned into the template's data with
// protojson and apimachinery's JSON (integers as int64), apimachinery's YAML document decoder, and
// function-sdk-go for the protocol. What it mirrors from that release's fn.go, line for line in
// intent: the `include` function; the gotemplating.fn.crossplane.io/composition-resource-name
// annotation (required, then removed); the gotemplating.fn.crossplane.io/ready annotation (True,
// False or Unspecified, then removed); a document of the XR's own apiVersion and kind merging its
// status into the desired XR (mergo, override); an ExtraResources document (meta.gotemplating.fn.
// crossplane.io) becoming requirements. The other meta kinds and the FileSystem/Environment
// sources are refused: the compositions use none of them.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"

	"dario.cat/mergo"
	sprig "github.com/Masterminds/sprig/v3"
	"github.com/crossplane/function-sdk-go"
	"github.com/crossplane/function-sdk-go/logging"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/request"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/response"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/yaml"
)

const (
	annotationName  = "gotemplating.fn.crossplane.io/composition-resource-name"
	annotationReady = "gotemplating.fn.crossplane.io/ready"
	inputAPIVersion = "gotemplating.fn.crossplane.io/v1beta1"
	metaAPIVersion  = "meta.gotemplating.fn.crossplane.io/v1alpha1"
)

type goTemplating struct {
	fnv1.UnimplementedFunctionRunnerServiceServer
	log logging.Logger
}

func (f *goTemplating) RunFunction(_ context.Context, req *fnv1.RunFunctionRequest) (*fnv1.RunFunctionResponse, error) {
	rsp := response.To(req, response.DefaultTTL)
	if err := f.run(req, rsp); err != nil {
		response.Fatal(rsp, err)
	}
	return rsp, nil
}

func (f *goTemplating) run(req *fnv1.RunFunctionRequest, rsp *fnv1.RunFunctionResponse) error {
	in := &unstructured.Unstructured{}
	if err := request.GetInput(req, in); err != nil {
		return fmt.Errorf("cannot get Function input: %w", err)
	}
	if in.GetAPIVersion() != inputAPIVersion || in.GetKind() != "GoTemplate" {
		return fmt.Errorf("input is %s %s, want %s GoTemplate", in.GetAPIVersion(), in.GetKind(), inputAPIVersion)
	}
	if src, _, _ := unstructured.NestedString(in.Object, "source"); src != "Inline" {
		return fmt.Errorf("source %q is not supported here (only Inline)", src)
	}
	text, found, err := unstructured.NestedString(in.Object, "inline", "template")
	if err != nil || !found {
		return errors.New("invalid function input: inline.template is required")
	}

	tmpl := template.New("manifests")
	tmpl.Funcs(template.FuncMap{"include": include(tmpl)})
	funcs := sprig.FuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	tmpl.Funcs(funcs)
	if _, err := tmpl.Parse(text); err != nil {
		return fmt.Errorf("invalid function input: cannot parse the provided templates: %w", err)
	}

	data, err := requestAsMap(req)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("cannot execute template: %w", err)
	}

	var objs []*unstructured.Unstructured
	decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(buf.String()), 1024)
	for {
		u := &unstructured.Unstructured{}
		if err := decoder.Decode(&u); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("cannot decode manifest: %w", err)
		}
		if u == nil {
			continue
		}
		if _, _, err := unstructured.NestedStringMap(u.Object, "metadata", "annotations"); err != nil {
			return fmt.Errorf("invalid annotations in resource %s: %w", u.GroupVersionKind(), err)
		}
		objs = append(objs, u)
	}

	desiredXR, err := request.GetDesiredCompositeResource(req)
	if err != nil {
		return fmt.Errorf("cannot get desired composite resource: %w", err)
	}
	observedXR, err := request.GetObservedCompositeResource(req)
	if err != nil {
		return fmt.Errorf("cannot get observed composite resource: %w", err)
	}
	desired, err := request.GetDesiredComposedResources(req)
	if err != nil {
		return fmt.Errorf("cannot get desired composed resources: %w", err)
	}

	requirements := &fnv1.Requirements{Resources: map[string]*fnv1.ResourceSelector{}}
	for _, obj := range objs {
		if obj.GetAPIVersion() == metaAPIVersion {
			if obj.GetKind() != "ExtraResources" {
				return fmt.Errorf("%s %s is not supported here", metaAPIVersion, obj.GetKind())
			}
			if err := addRequirements(requirements, obj); err != nil {
				return err
			}
			continue
		}
		annotations := obj.GetAnnotations()
		var ready *resource.Ready
		if v, found := annotations[annotationReady]; found {
			r := resource.Ready(v)
			if r != resource.ReadyTrue && r != resource.ReadyFalse && r != resource.ReadyUnspecified {
				return fmt.Errorf("invalid function input: invalid %q annotation value %q: must be True, False, or Unspecified", annotationReady, v)
			}
			ready = &r
			delete(annotations, annotationReady)
		}
		name, named := annotations[annotationName]
		delete(annotations, annotationName)
		obj.SetAnnotations(annotations)

		if obj.GetAPIVersion() == observedXR.Resource.GetAPIVersion() && obj.GetKind() == observedXR.Resource.GetKind() && !named {
			dst, _, err := unstructured.NestedMap(desiredXR.Resource.Object, "status")
			if err != nil {
				return fmt.Errorf("cannot get desired composite status: %w", err)
			}
			src, _, err := unstructured.NestedMap(obj.Object, "status")
			if err != nil {
				return fmt.Errorf("cannot get templated composite status: %w", err)
			}
			if dst != nil || src != nil {
				if dst == nil {
					dst = map[string]any{}
				}
				if err := mergo.Merge(&dst, src, mergo.WithOverride); err != nil {
					return fmt.Errorf("cannot merge desired composite status: %w", err)
				}
				if err := unstructured.SetNestedMap(desiredXR.Resource.Object, dst, "status"); err != nil {
					return fmt.Errorf("cannot set desired composite status: %w", err)
				}
			}
			if ready != nil {
				desiredXR.Ready = *ready
			}
			continue
		}
		if !named {
			return fmt.Errorf("%q template is missing required %q annotation", obj.GetKind(), annotationName)
		}
		cd := resource.NewDesiredComposed()
		cd.Resource.Unstructured = *obj
		if ready != nil {
			cd.Ready = *ready
		}
		desired[resource.Name(name)] = cd
	}

	if err := response.SetDesiredComposedResources(rsp, desired); err != nil {
		return fmt.Errorf("cannot set desired composed resources: %w", err)
	}
	if err := response.SetDesiredCompositeResource(rsp, desiredXR); err != nil {
		return fmt.Errorf("cannot set desired composite resource: %w", err)
	}
	if len(requirements.GetResources()) > 0 {
		rsp.Requirements = requirements
	}
	f.log.Debug("composed", "count", len(objs))
	return nil
}

// requirement is one entry of an ExtraResources document's requirements (function-go-templating's
// ExtraResourcesRequirement): by name (in a namespace) or by labels.
type requirement struct {
	APIVersion  string            `json:"apiVersion"`
	Kind        string            `json:"kind"`
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	MatchName   string            `json:"matchName,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
}

// addRequirements asks Crossplane for the resources an ExtraResources document names; Crossplane
// fetches them and runs the function again with them in requiredResources.
func addRequirements(requirements *fnv1.Requirements, obj *unstructured.Unstructured) error {
	raw, err := json.Marshal(obj.Object["requirements"])
	if err != nil {
		return err
	}
	var wanted map[string]requirement
	if err := json.Unmarshal(raw, &wanted); err != nil {
		return fmt.Errorf("cannot get extra resources requirements: %w", err)
	}
	for key, r := range wanted {
		if _, dup := requirements.Resources[key]; dup {
			return fmt.Errorf("duplicate extra resource key %q", key)
		}
		sel := &fnv1.ResourceSelector{ApiVersion: r.APIVersion, Kind: r.Kind}
		if r.MatchName == "" {
			sel.Match = &fnv1.ResourceSelector_MatchLabels{MatchLabels: &fnv1.MatchLabels{Labels: r.MatchLabels}}
		} else {
			sel.Match = &fnv1.ResourceSelector_MatchName{MatchName: r.MatchName}
			if r.Namespace != "" {
				sel.Namespace = &r.Namespace
			}
		}
		requirements.Resources[key] = sel
	}
	return nil
}

// requestAsMap is the template's data: the RunFunctionRequest as JSON, decoded with apimachinery
// (whole numbers become int64, as in function-go-templating).
func requestAsMap(req *fnv1.RunFunctionRequest) (map[string]any, error) {
	raw, err := protojson.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("cannot marshal request from proto to json: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("cannot unmarshal json to map: %w", err)
	}
	return m, nil
}

// include executes a named template into a string (function-go-templating's `include`).
func include(t *template.Template) func(string, any) (string, error) {
	depth := map[string]int{}
	return func(name string, data any) (string, error) {
		if depth[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var b strings.Builder
		err := t.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
}

func main() {
	address := flag.String("address", "127.0.0.1:9443", "address to listen on for gRPC")
	insecure := flag.Bool("insecure", false, "serve without mTLS (the Development runtime of crossplane render)")
	debug := flag.Bool("debug", false, "debug logs")
	flag.Parse()
	if !*insecure {
		fmt.Fprintln(os.Stderr, "gotemplating: only --insecure is supported (local use by crossplane render)")
		os.Exit(2)
	}
	log, err := function.NewLogger(*debug)
	if err == nil {
		err = function.Serve(&goTemplating{log: log}, function.Listen("tcp", *address), function.Insecure(true))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotemplating:", err)
		os.Exit(1)
	}
}
