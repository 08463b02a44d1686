// Command xrdcrd prints the CustomResourceDefinitions Crossplane generates
// for the CompositeResourceDefinitions it reads on stdin, with Crossplane's
// own generator (the one its XRD controller runs, exported for tools by
// github.com/crossplane/crossplane/v2/cmd/crank/common/crd):
//
//	go run . < crossplane/apis/postgrescluster/definition.yaml
package main

import (
	"fmt"
	"os"

	un "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/crossplane/crossplane/v2/cmd/crank/common/crd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xrdcrd:", err)
		os.Exit(1)
	}
}

func run() error {
	var xrds []*un.Unstructured
	d := k8syaml.NewYAMLOrJSONDecoder(os.Stdin, 4096)
	for {
		u := &un.Unstructured{}
		if err := d.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				break
			}
			return err
		}
		if len(u.Object) > 0 {
			xrds = append(xrds, u)
		}
	}
	crds, err := crd.ConvertToCRDs(xrds)
	if err != nil {
		return err
	}
	for _, c := range crds {
		c.APIVersion, c.Kind = "apiextensions.k8s.io/v1", "CustomResourceDefinition"
		out, err := yaml.Marshal(c)
		if err != nil {
			return err
		}
		fmt.Printf("---\n%s", out)
	}
	return nil
}
