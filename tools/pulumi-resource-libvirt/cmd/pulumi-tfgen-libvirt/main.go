// pulumi-tfgen-libvirt writes the Pulumi schema of the bridged provider:
// `pulumi-tfgen-libvirt schema --skip-examples --out DIR` (without --skip-examples it runs the
// Terraform example converter, which needs plugins this machine does not have).
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"

	libvirt "virtstack.local/tools/pulumi-resource-libvirt"
	"virtstack.local/tools/pulumi-resource-libvirt/version"
)

func main() {
	tfgen.Main("libvirt", version.Version, libvirt.Provider())
}
