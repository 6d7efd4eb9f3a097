// Command pulumi-resource-aws is a provider double: the resource-provider
// plugin the real Pulumi engine loads as pulumi-aws 7.51.1 for the
// rehearsal, answering from the pulumi-aws types the project uses and
// recording every call (see docs/rehearsal.md). It never calls AWS.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func main() {
	err := provider.Main("aws", func(*provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return NewProvider(), nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws double: %v\n", err)
		os.Exit(1)
	}
}
