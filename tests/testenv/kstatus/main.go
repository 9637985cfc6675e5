// Command kstatus prints "<kind>/<name> <status>" for each object of a Kubernetes List read
// as JSON from stdin, as Flux (kstatus) computes it: Current, InProgress, Failed, ...
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read objects:", err)
		os.Exit(1)
	}
	// NB: the unstructured decoder keeps integers int64, as kstatus expects.
	list := &unstructured.UnstructuredList{}
	if err := list.UnmarshalJSON(data); err != nil {
		fmt.Fprintln(os.Stderr, "decode objects:", err)
		os.Exit(1)
	}
	for i := range list.Items {
		u := &list.Items[i]
		result, err := status.Compute(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "compute:", err)
			os.Exit(1)
		}
		fmt.Printf("%s/%s %s\n", u.GetKind(), u.GetName(), result.Status)
	}
}
