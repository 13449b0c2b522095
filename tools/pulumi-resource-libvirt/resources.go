// Package libvirt maps terraform-provider-libvirt's resources onto pulumi-libvirt's tokens, so the
// unmodified pulumi-libvirt SDK (PyPI pulumi-libvirt==0.5.4) drives this bridged provider.
package libvirt

import (
	"context"
	"sync"
	"time"

	tflibvirt "github.com/dmacvicar/terraform-provider-libvirt/libvirt"
	"github.com/hashicorp/terraform-plugin-sdk/v2/diag"
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	ptokens "github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	"virtstack.local/tools/pulumi-resource-libvirt/version"
)

const pkg = "libvirt"

// tok is pulumi-libvirt's token for a resource or function in its one module, index.
func tok(member string, lower string) ptokens.Type {
	return ptokens.Type(pkg + ":index/" + lower + ":" + member)
}

// streams orders libvirt stream transfers against every other call. terraform-provider-libvirt moves
// cloud-init ISOs (create, and every read) and source images through libvirt streams on the one
// connection it shares, and a stream running beside other calls on it deadlocks under load
// (dmacvicar/terraform-provider-libvirt#594: parallel cloud-init disks hang): a stream runs alone.
var streams sync.RWMutex

// guard runs `f` alone (exclusive) or beside other shared operations.
func guard[F ~func(context.Context, *schema.ResourceData, interface{}) diag.Diagnostics](f F, exclusive bool) F {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, d *schema.ResourceData, meta interface{}) diag.Diagnostics {
		if exclusive {
			streams.Lock()
			defer streams.Unlock()
		} else {
			streams.RLock()
			defer streams.RUnlock()
		}
		return f(ctx, d, meta)
	}
}

// guardAll puts every resource's operations under `streams`: cloud-init disks' all exclusive, a
// volume's create (it may upload its source) exclusive, the rest shared.
func guardAll(resources map[string]*schema.Resource) {
	for name, r := range resources {
		seed := name == "libvirt_cloudinit_disk"
		r.CreateContext = guard(r.CreateContext, seed || name == "libvirt_volume")
		r.ReadContext = guard(r.ReadContext, seed)
		r.UpdateContext = guard(r.UpdateContext, seed)
		r.DeleteContext = guard(r.DeleteContext, seed)
	}
}

// retryRead retries a resource's read a few times. 0.7.6 reads a CloudInitDisk back by downloading
// the ISO through a libvirt stream, which on a busy host now and then ends with nothing copied
// ("bytesCopied 0 != <size>"): one failed read would fail a whole refresh or plan.
func retryRead(read schema.ReadContextFunc) schema.ReadContextFunc {
	return func(ctx context.Context, d *schema.ResourceData, meta interface{}) diag.Diagnostics {
		var result diag.Diagnostics
		for attempt := 0; attempt < 4; attempt++ {
			if result = read(ctx, d, meta); !result.HasError() {
				return result
			}
			time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
		}
		return result
	}
}

// Provider is the bridge's description of the provider.
func Provider() tfbridge.ProviderInfo {
	tf := tflibvirt.Provider()
	guardAll(tf.ResourcesMap)
	if seed := tf.ResourcesMap["libvirt_cloudinit_disk"]; seed != nil && seed.ReadContext != nil {
		seed.ReadContext = retryRead(seed.ReadContext)
	}
	prov := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(tf),
		Name:        "libvirt",
		Version:     version.Version,
		GitHubOrg:   "dmacvicar",
		Publisher:   "virtstack",
		License:     "Apache-2.0",
		Repository:  "https://github.com/pulumi/pulumi-libvirt",
		Description: "pulumi-libvirt's interface, bridged from terraform-provider-libvirt v0.7.6 (virtstack's offline build)",
		Resources: map[string]*tfbridge.ResourceInfo{
			"libvirt_domain":   {Tok: tok("Domain", "domain")},
			"libvirt_volume":   {Tok: tok("Volume", "volume")},
			"libvirt_pool":     {Tok: tok("Pool", "pool")},
			"libvirt_network":  {Tok: tok("Network", "network")},
			"libvirt_ignition": {Tok: tok("Ignition", "ignition")},
			// The default mapping would spell it CloudinitDisk; pulumi-libvirt's SDK says CloudInitDisk.
			"libvirt_cloudinit_disk": {Tok: tok("CloudInitDisk", "cloudInitDisk")},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{},
		Python:      &tfbridge.PythonInfo{},
	}
	// Whatever else 0.7.6 has (its data sources) gets the standard token in module index.
	prov.MustComputeTokens(tokens.SingleModule("libvirt_", "index", tokens.MakeStandard(pkg)))
	return prov
}
