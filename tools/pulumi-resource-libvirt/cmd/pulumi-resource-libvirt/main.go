// pulumi-resource-libvirt is the resource plugin the engine runs for pulumi-libvirt's resources. The
// schema tfgen wrote (version stamped by scripts/build-libvirt-plugin.sh) is embedded.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"

	libvirt "virtstack.local/tools/pulumi-resource-libvirt"
	"virtstack.local/tools/pulumi-resource-libvirt/version"
)

//go:embed schema.json
var pulumiSchema []byte

func main() {
	tfbridge.Main("libvirt", version.Version, libvirt.Provider(), pulumiSchema)
}
